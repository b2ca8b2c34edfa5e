"""Alerts through the ``adw-broadcaster`` process (issue 25): real agents' files and processes, a real receiver.

The receiver (``tests/servers.Receiver``) is an HTTP server on 127.0.0.1 behind an Apprise
``json://`` URL that records what arrives.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import receive_until
from tests.helpers import Children, Service, end, eventually, read_line, save_state, watch
from tests.servers import Receiver


async def test_the_service_opens_a_failed_run_once_keeps_it_over_a_restart_and_resolves_it(
    receiver: Receiver, tmp_path: Path
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    config = (
        '[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n'
        f"[event_log]\npath = '{tmp_path / 'events.db'}'\n"
        f"[adw]\nagents_dir = '{agents}'\ntrees_dir = '{tmp_path / 'trees'}'\nprocess_scan = false\n"
        f"[alerts]\nurls = ['{receiver.url}']\ndashboard_url = 'http://dash.example/'\n"
    )
    save_state(agents, "a1", status="running", issue_number=42, nl_input="Add dark mode")
    service = await Service(tmp_path, config).start()
    watching = watch("alerts", "--url", f"http://127.0.0.1:{service.port}")
    try:
        assert (await read_line(watching)).split(" ", 1)[1] == "alerts #0 snapshot: 0 open (0 not acknowledged)"
        secret = "ghp_" + "a1b2c3d4e5" * 4  # a GitHub token in the error: redacted like every message
        save_state(agents, "a1", status="failed", issue_number=42, last_error=f"tests failed: 3 of 120 ({secret})")
        changed = time.monotonic()
        assert (await read_line(watching)).split(" ", 1)[1] == (
            "alerts #1 opened [error] ADW a1 (issue #42) failed:"
            " ADW a1 (issue #42): tests failed: 3 of 120 ([redacted]) http://dash.example/#/adw/a1"
        )
        await eventually(lambda: receiver.got, timeout=10)
        assert time.monotonic() - changed < 2  # the issue's bound: within 2 s of the state change
        await service.stop()
        service = await Service(tmp_path, config).start()  # a restart sends nothing again
        async with aiohttp.ClientSession() as session:
            async with session.post(service.url("/api/v1/alerts/nothing/ack")) as response:
                assert (response.status, await response.json()) == (404, {"detail": "no open alert 'nothing'"})
            async with session.post(service.url("/api/v1/alerts/adw_failed:a1/ack")) as response:
                assert await response.json() == {"acknowledged": ["adw_failed:a1"]}
            save_state(agents, "a1", status="completed", issue_number=42)
            await eventually(lambda: len(receiver.got) == 2, timeout=10)
            async with session.get(service.url("/api/v1/events?channel=alerts&since=0")) as response:
                events = (await response.json())["events"]
        assert [(e["seq"], len(e["data"]["open"]), len(e["data"]["recent"])) for e in events] == [
            (1, 1, 0),
            (2, 1, 0),  # acknowledged
            (3, 0, 1),
        ]
        assert events[1]["data"]["open"][0]["acknowledged"] is True
    finally:
        end(watching)
        await service.stop()
    assert [(m["title"], m["type"]) for m in receiver.got] == [
        ("[error] ADW a1 (issue #42) failed", "failure"),
        ("[resolved] ADW a1 (issue #42) failed", "success"),
    ]
    assert receiver.got[0]["message"] == (
        "ADW a1 (issue #42): tests failed: 3 of 120 ([redacted])\nhttp://dash.example/#/adw/a1\nalert adw_failed:a1"
    )
    assert not any(receiver.url in line for line in service.stderr)


def alerts_config(tmp_path: Path, receiver: Receiver, adw: str = "") -> str:
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    return (
        '[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        f"[adw]\nagents_dir = '{agents}'\ntrees_dir = '{tmp_path / 'trees'}'\n{adw}"
        f"[alerts]\nurls = ['{receiver.url}']\n"
    )


async def test_a_killed_agent_alerts_once_and_resolves_when_a_process_is_back(
    receiver: Receiver, tmp_path: Path, children: Children
) -> None:
    config = alerts_config(tmp_path, receiver, "process_scan_interval = 0.1\nstall_after = 3\n")
    agents = tmp_path / "agents"
    adw_id = secrets.token_hex(4)  # the process table is the machine's: an id no other test uses
    save_state(agents, adw_id, status="running", issue_number=7, current_cost=1.0, estimated_cost_total=2.0)
    service = await Service(tmp_path, config).start()
    try:
        agent = children.start(adw_id)
        save_state(agents, adw_id, status="running", issue_number=7, current_cost=3.5, estimated_cost_total=2.0)
        await eventually(lambda: len(receiver.got) == 1, timeout=10)  # over budget: once
        save_state(agents, adw_id, status="running", issue_number=7, current_cost=9.0, estimated_cost_total=2.0)
        children.kill(agent)
        await eventually(lambda: len(receiver.got) == 2, timeout=20)  # stalled, 3 s after the files last moved
        children.start(adw_id)
        await eventually(lambda: len(receiver.got) == 3, timeout=10)
    finally:
        await service.stop()
    name = f"ADW {adw_id} (issue #7)"
    assert [(m["title"], m["type"]) for m in receiver.got] == [
        (f"[warning] {name} over budget", "warning"),
        (f"[warning] {name} stalled", "warning"),
        (f"[resolved] {name} stalled", "success"),
    ]
    assert receiver.got[0]["message"].startswith(f"{name} has cost $3.50, 1.8x its estimate of $2.00.\n")


async def test_a_receiver_down_is_said_in_status_the_feeds_go_on_and_it_gets_its_messages_later(
    receiver: Receiver, tmp_path: Path
) -> None:
    await receiver.stop()
    config = alerts_config(tmp_path, receiver, "process_scan = false\n")
    agents = tmp_path / "agents"
    save_state(agents, "a1", status="running", issue_number=1)
    service = await Service(tmp_path, config).start()
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws")) as ws:
            await ws.send_json({"type": "subscribe", "channels": ["adw-monitor", "system-status"]})
            save_state(agents, "a1", status="failed", issue_number=1, last_error="boom")

            def alerts_entry(m: dict[str, Any]) -> Any:
                return m.get("channel") == "system-status" and m["data"]["services"].get("alerts", {}).get("status")

            down = await receive_until(ws, lambda m: alerts_entry(m) == "error", timeout=20)
            entry = down[-1]["data"]["services"]["alerts"]
            assert entry["message"] == "json://: A Connection error occurred sending JSON notification to …."
            save_state(agents, "a1", status="failed", issue_number=1, last_error="boom", current_phase="test")
            moved = await receive_until(
                ws, lambda m: m.get("channel") == "adw-monitor" and m["data"]["workflows"][0]["current_phase"] == "test"
            )
            assert moved[-1]["data"]["workflows"][0]["status"] == "failed"  # the feed goes on while delivery fails
            await receiver.start()
            await receive_until(ws, lambda m: alerts_entry(m) == "healthy", timeout=30)
        assert [m["title"] for m in receiver.got] == ["[error] ADW a1 (issue #1) failed"]
    finally:
        await service.stop()
    assert not any(f"127.0.0.1:{receiver.port}" in line for line in service.stderr)  # the URL is a secret
    failing = [line for line in service.stderr if "alerts: json:// failed" in line]
    assert len(failing) == 1 and "1 message(s) wait" in failing[0]  # logged once, with the count
