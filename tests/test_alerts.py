"""Alerts (issue 25): the rules, the book and the engine over channel data; delivery to a real receiver.

The receiver is a real HTTP server on 127.0.0.1 behind an Apprise ``json://`` URL: it records
every message Apprise POSTs (``{version, title, message, type}``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from broadcaster import create_app, load_config
from broadcaster.alerts.book import AlertBook
from broadcaster.alerts.delivery import Delivery, Message
from broadcaster.alerts.engine import Alerts
from broadcaster.alerts.rules import adw_causes, errors_since, queue_causes, service_causes
from broadcaster.channels.specs import CATALOG
from broadcaster.config.rules import ALERT_RULES
from broadcaster.config.sections import AlertsConfig
from broadcaster.core.events import EventLog
from broadcaster.core.hub import Hub
from broadcaster.core.pipeline import Pipeline
from broadcaster.core.store import MemoryEventStore
from broadcaster.core.throttle import Throttle
from broadcaster.errors import StartupError
from sources.backoff import Backoff
from tests.helpers import eventually
from tests.servers import Receiver

BASE = "http://dash.example:8002/"
FAST = Backoff(0.01, 0.05)


def item(adw_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {"adw_id": adw_id, "issue_number": 42, "status": status, "stalled": False, **more}


def test_an_alert_opens_once_resolves_once_and_continues_from_its_data() -> None:
    book = AlertBook()
    failed = {"workflows": [item("a1", "failed", last_error="tests failed", github_url="https://gh/i/42")]}
    opened, resolved = book.apply(adw_causes(failed, ALERT_RULES, 1.5, BASE), ALERT_RULES, "t1")
    assert (opened, resolved) == (
        [
            {
                "id": "adw_failed:a1",
                "rule": "adw_failed",
                "subject": "a1",
                "severity": "error",
                "title": "ADW a1 (issue #42) failed",
                "text": "ADW a1 (issue #42): tests failed",
                "opened_at": "t1",
                "resolved_at": None,
                "adw_id": "a1",
                "github_url": "https://gh/i/42",
                "link": "http://dash.example:8002/#/adw/a1",
                "acknowledged": False,
            }
        ],
        [],
    )
    assert book.apply(adw_causes(failed, ALERT_RULES, 1.5, BASE), ALERT_RULES, "t2") == ([], [])
    again = AlertBook()
    again.restore(book.data())  # a restart: nothing opens again for the same cause
    assert again.apply(adw_causes(failed, ALERT_RULES, 1.5, BASE), ALERT_RULES, "t3") == ([], [])
    assert again.apply({}, (), "t4") == ([], [])  # a rule not judged yet resolves nothing
    odd = AlertBook()
    odd.restore({"open": [{**book.data()["open"][0], "id": "x", "opened_at": 5}, 7], "recent": "no"})
    assert odd.data() == {"open": [], "recent": []}  # a stored row that is not an alert costs that row
    done = {"workflows": [item("a1", "completed")]}
    opened, resolved = again.apply(adw_causes(done, ALERT_RULES, 1.5, BASE), ALERT_RULES, "t5")
    assert (opened, [(a["id"], a["resolved_at"]) for a in resolved]) == ([], [("adw_failed:a1", "t5")])
    assert again.data() == {"open": [], "recent": resolved}


def test_stalled_over_budget_and_queue_rules_see_their_causes() -> None:
    monitor = {
        "workflows": [
            item("s1", "paused", stalled=True, stalled_seconds=31.5),
            item("b1", "running", current_cost=3.1, estimated_cost_total=2.0),
            item("b2", "running", current_cost=2.9, estimated_cost_total=2.0),  # 1.45x: under 1.5
            item("x", "running", current_cost="²", estimated_cost_total=None),
        ]
    }
    causes = adw_causes(monitor, ALERT_RULES, 1.5, BASE)
    assert {i: (c.title, c.text) for i, c in causes.items()} == {
        "adw_stalled:s1": (
            "ADW s1 (issue #42) stalled",
            "ADW s1 (issue #42) says running, but no process of it is alive and its files have not moved for 31 s.",
        ),
        "adw_over_budget:b1": (
            "ADW b1 (issue #42) over budget",
            "ADW b1 (issue #42) has cost $3.10, 1.6x its estimate of $2.00.",
        ),
    }
    assert adw_causes(monitor, ["adw_failed"], 1.5, BASE) == {}
    queue = {"phases": [{"queue_id": "q-2", "status": "blocked", "phase": "Build", "parent_issue": 7, "adw_id": "a9"}]}
    assert [(c.id, c.title, c.link) for c in queue_causes(queue, ALERT_RULES, BASE).values()] == [
        ("queue_blocked:q-2", "Queue phase Build blocked (feature 7)", "http://dash.example:8002/#/adw/a9")
    ]


def test_a_service_error_fires_only_after_it_lasted_and_flapping_never_does() -> None:
    def status(level: str) -> dict[str, Any]:
        return {
            "services": {"webhook": {"status": level, "message": "connection refused"}, "alerts": {"status": "error"}}
        }

    since = errors_since(status("error"), {}, 100.0)
    assert since == {"webhook": 100.0}  # the alerts' own entry is never a cause
    assert service_causes(status("error"), since, 159.0, 60, ALERT_RULES, BASE) == {}
    since = errors_since(status("healthy"), since, 159.5)  # it recovered in time: the count starts again
    since = errors_since(status("error"), since, 160.0)
    assert service_causes(status("error"), since, 219.0, 60, ALERT_RULES, BASE) == {}
    causes = service_causes(status("error"), since, 220.0, 60, ALERT_RULES, BASE)
    assert [(c.id, c.text) for c in causes.values()] == [("service_error:webhook", "webhook: connection refused")]


async def test_messages_reach_the_receiver_and_a_burst_folds_past_the_limit(receiver: Receiver) -> None:
    delivery = Delivery([receiver.url], max_per_minute=10, window=1.0, backoff=FAST)
    task = asyncio.create_task(delivery.run())
    try:
        for n in range(50):
            delivery.send(Message(f"ADW a{n} failed", f"text {n}", "failure"))
        await eventually(lambda: len(receiver.got) == 11, timeout=10)
        assert [m["title"] for m in receiver.got[:10]] == [f"ADW a{n} failed" for n in range(10)]
        assert receiver.got[0] == {
            "version": "1.0",
            "title": "ADW a0 failed",
            "message": "text 0",
            "attachments": [],
            "type": "failure",
        }
        summary = receiver.got[10]
        assert (summary["title"], summary["type"]) == ("40 more alerts", "failure")
        assert summary["message"].splitlines()[:2] == ["- ADW a10 failed", "- ADW a11 failed"]
        assert summary["message"].splitlines()[-1] == "- and 20 more"
        assert list(delivery.destinations[0].queue) == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_receiver_down_shows_in_status_and_gets_what_waited_when_back(receiver: Receiver) -> None:
    await receiver.stop()
    states: list[Any] = []
    delivery = Delivery([receiver.url], retries=3, backoff=FAST)
    delivery.on_state = lambda: states.append(delivery.status_entry())
    task = asyncio.create_task(delivery.run())
    try:
        delivery.send(Message("one", "1"))
        delivery.send(Message("two", "2"))
        await eventually(lambda: states, timeout=10)
        name, level, message, details = states[0]
        assert (name, level, details) == ("alerts", "error", {"waiting": 2})
        assert message == "json://: A Connection error occurred sending JSON notification to …."  # no host
        await receiver.start()
        await eventually(lambda: len(receiver.got) == 2, timeout=10)
        assert [m["title"] for m in receiver.got] == ["one", "two"]
        assert delivery.status_entry() == ("alerts", "healthy", "delivering to json://", {"waiting": 0})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def engine(clock: Clock, **alerts: Any) -> tuple[Alerts, Pipeline, list[Message]]:
    """An engine on a real pipeline, event log and hub; the messages it hands to delivery kept in order."""
    log = EventLog(MemoryEventStore(), catalog=CATALOG)
    pipeline = Pipeline(log, Throttle(0), Hub(catalog=CATALOG))
    sent: list[Message] = []
    found = Alerts(AlertsConfig(**alerts), pipeline=pipeline, log=log, base=BASE, send=sent.append, clock=clock)
    pipeline.listeners.append(found.observe)
    found.start()
    return found, pipeline, sent


def status(level: str) -> dict[str, Any]:
    return {"overall_status": level, "services": {"webhook": {"name": "webhook", "status": level, "message": "down"}}}


def test_a_service_error_opens_once_after_it_lasted_and_resolves_once_on_recovery() -> None:
    clock = Clock()
    alerts, pipeline, sent = engine(clock, service_error_after=60)
    pipeline.update("system-status", status("error"))
    alerts.judge()
    clock.now += 30
    pipeline.update("system-status", status("healthy"))  # 30 s of error: nothing
    alerts.judge()
    pipeline.update("system-status", status("error"))
    alerts.judge()
    clock.now += 59.9
    alerts.judge()
    assert sent == [] and pipeline.log.last("alerts") is None
    clock.now += 0.1
    alerts.judge()
    clock.now += 300
    alerts.judge()  # still failing: nothing more
    pipeline.update("system-status", {**status("error"), "services": {"webhook": {"status": "unknown"}}})
    alerts.judge()  # being checked again (a restart): not a recovery
    pipeline.update("system-status", status("healthy"))
    alerts.judge()
    assert [(m.title, m.kind) for m in sent] == [
        ("[error] webhook is failing", "failure"),
        ("[resolved] webhook is failing", "success"),
    ]
    last = pipeline.log.last("alerts")
    assert last is not None and last.seq == 2 and last.data["open"] == []
    assert [(a["id"], a["opened_at"], a["resolved_at"]) for a in last.data["recent"]] == [
        ("service_error:webhook", "1970-01-01T00:18:10.000Z", "1970-01-01T00:23:10.000Z")
    ]


def test_over_budget_fires_once_and_an_ack_is_an_event() -> None:
    alerts, pipeline, sent = engine(Clock(), over_budget_ratio=1.5)
    for cost in (2.0, 3.5, 4.0, 5.0):  # the estimate is 2.0: 3.5 passes 1.5x; more cost is the same cause
        run = item("b1", "running", current_cost=cost, estimated_cost_total=2.0, github_url="https://gh/o/r/issues/42")
        monitor = {"workflows": [run], "summary": {}}
        pipeline.update("adw-monitor", {**monitor, "last_updated": "x"})
        alerts.judge()
    assert sent == [
        Message(
            "[warning] ADW b1 (issue #42) over budget",
            "ADW b1 (issue #42) has cost $3.50, 1.8x its estimate of $2.00.\nhttp://dash.example:8002/#/adw/b1"
            "\nhttps://gh/o/r/issues/42\nalert adw_over_budget:b1",
            "warning",
        )
    ]
    assert alerts.ack("adw_over_budget:b1") == ["adw_over_budget:b1"]
    assert alerts.ack("adw_over_budget:b1") == []  # already: no new event
    assert alerts.ack("nothing") is None
    last = pipeline.log.last("alerts")
    assert last is not None and last.seq == 2 and last.data["open"][0]["acknowledged"] is True


def test_a_url_apprise_does_not_know_or_an_unreadable_url_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "urls").write_text("# ours\njson://127.0.0.1:9/hook\n\nnot-a-url\n")
    for alerts, why in (
        (
            "urls = ['json://127.0.0.1:9/a', 'nonsense://secret@x']",
            "[alerts] urls: entry 2 (nonsense://) is not an Apprise URL",
        ),
        ("url_file = 'urls'", "[alerts] urls: entry 2 (?) is not an Apprise URL"),
        ("url_file = 'missing'", f"[alerts] url_file: cannot read {tmp_path / 'missing'}: FileNotFoundError"),
    ):
        path = tmp_path / "c.toml"
        path.write_text(f'[event_log]\npath = ""\n[webhook]\nstatus_url = ""\n[alerts]\n{alerts}\n')
        with pytest.raises(StartupError) as info:
            create_app(load_config(path, env={}, cwd=tmp_path))
        assert str(info.value) == why


async def test_past_the_queue_bound_the_oldest_waiting_messages_go_and_the_count_is_logged(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await receiver.stop()
    delivery = Delivery([receiver.url], queue_max=3, retries=1, backoff=FAST)
    task = asyncio.create_task(delivery.run())
    try:
        delivery.send(Message("m0", "0"))
        await eventually(lambda: delivery.destinations[0].failing, timeout=10)  # m0 is being retried
        for n in range(1, 6):
            delivery.send(Message(f"m{n}", str(n)))
        await receiver.start()
        await eventually(lambda: len(receiver.got) == 4, timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [m["title"] for m in receiver.got] == ["m0", "m3", "m4", "m5"]  # m1, m2: the oldest waiting
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        "alerts: json:// is back; 2 message(s) were dropped while it failed"
    ]


async def test_the_ack_answers_are_the_documented_ones(start, write_state) -> None:
    write_state("a1", issue_number=3, status="failed", last_error="boom")
    client = await start(broadcast__min_interval=0)
    first = await eventually(lambda: _open_ids(client), timeout=10)
    assert first == ["adw_failed:a1"]
    answer = await client.post("/api/alerts/ack")  # every open one; checked against the OpenAPI document
    assert (answer.status, await answer.json()) == (200, {"acknowledged": ["adw_failed:a1"]})
    again = await client.post("/api/v1/alerts/adw_failed:a1/ack")
    assert (again.status, await again.json()) == (200, {"acknowledged": []})
    missing = await client.post("/api/v1/alerts/adw_failed:zz/ack")
    assert (missing.status, await missing.json()) == (404, {"detail": "no open alert 'adw_failed:zz'"})


async def _open_ids(client: Any) -> list[str]:
    data = await (await client.get("/api/v1/alerts")).json()
    return [alert["id"] for alert in data["open"]]
