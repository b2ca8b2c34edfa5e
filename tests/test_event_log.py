"""The event log: resume, restarts, a kill -9, retention, and the events API."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from broadcaster import create_app
from broadcaster.channels.specs import CATALOG
from broadcaster.config import load_config
from broadcaster.core.events import Event
from broadcaster.core.log_file import CRASH_SEQ_GAP
from broadcaster.core.sqlite_store import SqliteEventStore
from broadcaster.core.store import MemoryEventStore
from broadcaster.web.keys import EVENT_LOG
from tests.conftest import EPOCH, ISO_TIME, UPGRADE, receive

STATE = "/ws/adw-state/a1"


async def epoch_of(client) -> str:
    epoch: str = (await (await client.get("/api/v1/channels")).json())["epoch"]
    return epoch


async def advance(client, write_state, *steps: int) -> dict:
    """Write each step to a1's state, waiting for its message on a socket of our own; return the last."""
    async with client.ws_connect(STATE) as ws:
        await receive(ws)
        for step in steps:
            write_state("a1", step=step)
            message = await receive(ws)
            assert message["data"] == {"adw_id": "a1", "step": step}
    return message


async def test_resume_after_a_gap_gets_the_newest_state_marked_recovered(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect(STATE) as ws:
        first = await receive(ws)
    epoch = await epoch_of(client)
    assert (first["seq"], first["epoch"]) == (1, epoch)
    await advance(client, write_state, 1, 2, 3)  # missed while away: seq 2, 3, 4
    async with client.ws_connect(f"{STATE}?since=1&epoch={epoch}") as ws:
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 4,
            "epoch": epoch,
            "recovered": True,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 3},
        }
        write_state("a1", step=4)  # and then it is live, without epoch or recovered
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 5,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 4},
        }


async def test_an_up_to_date_client_gets_nothing_extra(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    message = await advance(client, write_state, 1)
    epoch = await epoch_of(client)
    async with client.ws_connect(f"{STATE}?since={message['seq']}&epoch={epoch}") as ws:
        write_state("a1", step=2)
        # Had the server sent the snapshot again, it would come first (seq 2, step 1).
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 3,
            "epoch": epoch,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 2},
        }


@pytest.mark.parametrize(
    "query",
    ["since=1&epoch=0123456789abcdef", "since=1", "since=99&epoch={epoch}"],
    ids=["wrong epoch", "no epoch", "seq from the future"],
)
async def test_a_resume_that_cannot_be_trusted_gets_the_snapshot_not_recovered(start, write_state, query) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    await advance(client, write_state, 1)
    epoch = await epoch_of(client)
    async with client.ws_connect(f"{STATE}?{query.format(epoch=epoch)}") as ws:
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 2,
            "epoch": epoch,
            "recovered": False,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 1},
        }


async def test_a_resume_past_what_the_log_still_holds_is_not_recovered(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0, event_log__keep_per_channel=2, event_log__path="")
    await advance(client, write_state, 1, 2, 3, 4)  # seq 2..5; the log keeps 4 and 5
    epoch = await epoch_of(client)
    async with client.ws_connect(f"{STATE}?since=3&epoch={epoch}") as ws:
        assert (await receive(ws))["recovered"] is True  # 4 and 5 are held: a true recovery
    async with client.ws_connect(f"{STATE}?since=2&epoch={epoch}") as ws:
        message = await receive(ws)  # 3 was trimmed: the client cannot know what it missed
        assert (message["seq"], message["recovered"], message["data"]["step"]) == (5, False, 4)


@pytest.mark.parametrize("since", ["-1", "x", "1.5", "9" * 30])
async def test_a_malformed_since_is_refused(start, since: str) -> None:
    client = await start()
    response = await client.get(
        f"{STATE}?since={since}",
        headers=UPGRADE,
    )
    assert response.status == 400
    assert (await response.json())["detail"].startswith("since must be a non-negative integer")


async def test_a_restart_continues_seq_and_sends_nothing_new(start, write_state, workspace) -> None:
    write_state("a1", step=0)
    first = await start(broadcast__min_interval=0)
    last = await advance(first, write_state, 1, 2)
    epoch = await epoch_of(first)
    async with first.ws_connect("/ws/workflows") as ws:
        workflows_seq = (await receive(ws))["seq"]
    await first.close()  # a clean stop

    again = await start(broadcast__min_interval=0)
    async with (
        again.ws_connect(f"{STATE}?since={last['seq']}&epoch={epoch}") as ws,
        again.ws_connect("/ws/workflows") as wf,
    ):
        snapshot = await receive(wf)
        assert (snapshot["seq"], snapshot["epoch"]) == (workflows_seq, epoch)  # same history, same seq
        write_state("a1", step=3)
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": last["seq"] + 1,
            "epoch": epoch,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 3},
        }
    response = await again.get("/api/v1/events?channel=adw-state:a1")
    assert [(e["seq"], e["data"]) for e in (await response.json())["events"]] == [
        (1, {"adw_id": "a1", "step": 0}),
        (2, {"adw_id": "a1", "step": 1}),
        (3, {"adw_id": "a1", "step": 2}),
        (4, {"adw_id": "a1", "step": 3}),
    ]  # the restart itself added nothing


async def test_an_adw_removed_while_the_service_was_down_is_emptied(start, write_state, workspace) -> None:
    write_state("gone", step=0)
    first = await start()
    async with first.ws_connect("/ws/adw-state/gone") as ws:
        assert (await receive(ws))["seq"] == 1
    await first.close()
    (workspace.agents / "gone" / "adw_state.json").unlink()
    (workspace.agents / "gone").rmdir()
    again = await start()
    async with again.ws_connect("/ws/adw-state/gone") as ws:
        assert (await receive(ws))["data"] == {}


async def test_a_second_service_on_the_same_log_is_refused(start, make_config) -> None:
    await start()
    second = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--port", "0"],
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "BROADCASTER_EVENT_LOG_PATH": str(make_config().event_log.path),
        },
        capture_output=True,
        text=True,
        timeout=20,
        cwd=make_config().adw.agents_dir.parent,
    )
    assert second.returncode == 1
    assert second.stderr.endswith(
        f"adw-broadcaster: cannot start: event log {make_config().event_log.path} is in "
        "use by another adw-broadcaster (give each its own [event_log] path)\n"
    )


async def test_kill_9_loses_at_most_the_last_batch_and_never_reuses_a_seq(workspace, write_state) -> None:
    write_state("a1", step=0)
    config = workspace.root / "config.toml"
    config.write_text(
        '[server]\nport = 0\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n'
        '[event_log]\npath = "events.db"\nflush_interval = 0.2\n'
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    async def run_until_killed() -> tuple[int, str]:
        with subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=workspace.root,
        ) as proc:
            try:
                assert proc.stdout is not None
                banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
                port = re.search(r":(\d+)$", banner.strip()).group(1)  # type: ignore[union-attr]
                async with (
                    aiohttp.ClientSession() as session,
                    session.ws_connect(f"http://127.0.0.1:{port}{STATE}") as ws,
                ):
                    first = await receive(ws)
                    seen = first
                    for step in range(1, 40):  # many quick changes: some are still unflushed at the kill
                        write_state("a1", step=step)
                        seen = await receive(ws)
                        assert seen["data"]["step"] == step
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
            finally:
                if proc.poll() is None:
                    proc.kill()
        return seen["seq"], first["epoch"]

    seen_seq, epoch = await run_until_killed()
    with sqlite3.connect(workspace.root / "events.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        [(stored,)] = db.execute("SELECT MAX(seq) FROM events WHERE channel = 'adw-state:a1'").fetchall()
        assert db.execute("SELECT value FROM meta WHERE key = 'running'").fetchall() == [("1",)]
    db.close()
    assert 1 <= stored <= seen_seq  # whatever was lost was at the tail

    cfg = load_config(config, env={}, cwd=workspace.root)
    async with TestClient(TestServer(create_app(cfg))) as client:
        async with client.ws_connect(STATE) as ws:
            snapshot = await receive(ws)
            assert (snapshot["epoch"], snapshot["data"]["step"]) == (epoch, 39)  # same history, newest state
            if stored == seen_seq:  # nothing was lost: it goes on from the last stored seq
                assert snapshot["seq"] == stored
            else:  # the tail was lost, and those seqs may have reached clients: none is reused
                assert snapshot["seq"] == stored + 1 + CRASH_SEQ_GAP
            write_state("a1", step=100)
            message = await receive(ws)
            assert (message["seq"], message["data"]["step"]) == (stored + 1 + CRASH_SEQ_GAP + (stored != seen_seq), 100)
        async with client.ws_connect(f"{STATE}?since={seen_seq}&epoch={epoch}") as ws:
            message = await receive(ws)  # a seq from before the crash can no longer be vouched for
            assert (message["recovered"], message["data"]["step"]) == (False, 100)


async def test_retention_trims_by_count_and_age_and_keeps_each_channels_newest(tmp_path: Path) -> None:
    now = [1000.0]
    store = SqliteEventStore(tmp_path / "e.db", catalog=CATALOG, keep_per_channel=3, max_age=100, clock=lambda: now[0])
    await store.open()
    try:
        for seq in range(1, 7):
            store.append(Event("queue", seq, "queue_update", {"n": seq}, f"d{seq}", 1000.0 + seq))
        store.append(Event("routes", 1, "routes_update", [], "r1", 500.0))
        store.append(Event("routes", 2, "routes_update", [1], "r2", 600.0))
        await store.flush()
        assert await store.trim() == 4  # queue 1-3 (count), routes 1 (age)
        assert [e.seq for _, e in await store.events("queue", 0, 100)] == [4, 5, 6]
        assert [e.seq for _, e in await store.events("routes", 0, 100)] == [2]  # old, but the newest: kept
        assert (store.contiguous_from("queue"), store.contiguous_from("routes")) == (4, 2)
        now[0] = 5000.0
        assert await store.trim() == 2  # everything is old now; each channel's newest stays
        assert [(e.channel, e.seq) for _, e in await store.events(None, 0, 100)] == [("queue", 6), ("routes", 2)]
    finally:
        await store.close()


async def test_memory_store_keeps_the_same_contract(tmp_path: Path) -> None:
    store = MemoryEventStore(keep_per_channel=2)
    for seq in (1, 2, 3):
        store.append(Event("queue", seq, "queue_update", {}, "d", 0.0))
    store.append(Event("routes", 1, "routes_update", [], "d", 0.0))
    assert [(i, e.seq) for i, e in await store.events("queue", 0, 10)] == [(2, 2), (3, 3)]
    assert [(i, e.channel) for i, e in await store.events(None, 2, 10)] == [(3, "queue"), (4, "routes")]
    assert (store.contiguous_from("queue"), store.contiguous_from("routes"), store.contiguous_from("x")) == (2, 1, 1)


async def test_events_and_channels_api(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    await advance(client, write_state, 1, 2)
    body = await (await client.get("/api/v1/events?channel=adw-state:a1&since=1&limit=1")).json()
    assert body == {
        "epoch": EPOCH,
        "channel": "adw-state:a1",
        "since": 1,
        "next": 2,
        "events": [
            {
                "id": body["events"][0]["id"],
                "channel": "adw-state:a1",
                "seq": 2,
                "type": "adw_state_update",
                "data": {"adw_id": "a1", "step": 1},
                "digest": body["events"][0]["digest"],
                "timestamp": ISO_TIME,
            }
        ],
    }
    page = await (await client.get(f"/api/events?channel=adw-state:a1&since={body['next']}")).json()
    assert [e["seq"] for e in page["events"]] == [3]
    everything = await (await client.get("/api/v1/events?limit=1000")).json()
    ids = [e["id"] for e in everything["events"]]
    assert ids == sorted(ids)
    assert {"adw-state:a1", "adw-monitor"} <= {e["channel"] for e in everything["events"]}
    channels = await (await client.get("/api/v1/channels")).json()
    a1 = next(c for c in channels["channels"] if c["channel"] == "adw-state:a1")
    assert a1 == {
        "channel": "adw-state:a1",
        "type": "adw_state_update",
        "seq": 3,
        "digest": a1["digest"],
        "timestamp": ISO_TIME,
        "subscribers": 0,
        "contiguous_from": 1,
    }
    assert channels["epoch"] == body["epoch"]
    for query, error in [
        ("channel=nope", "no channel 'nope' (e.g. queue, adw-state:77c90e61)"),
        ("channel=adw-state", "no channel 'adw-state' (e.g. queue, adw-state:77c90e61)"),
        ("since=-1", "since and limit must be non-negative integers (at most 18 digits)"),
        ("limit=x", "since and limit must be non-negative integers (at most 18 digits)"),
        ("since=\u00b2", "since and limit must be non-negative integers (at most 18 digits)"),
        ("since=1e20", "since and limit must be non-negative integers (at most 18 digits)"),
        ("since=100000000000000000000", "since and limit must be non-negative integers (at most 18 digits)"),
        ("limit=0", "limit must be 1-1000"),
    ]:
        response = await client.get(f"/api/v1/events?{query}")
        assert (response.status, await response.json()) == (400, {"detail": error})


async def test_every_detected_change_is_logged_even_when_the_throttle_coalesces_it(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=1.0)
    async with client.ws_connect(STATE) as ws:
        await receive(ws)
        log = client.app[EVENT_LOG]
        for step in (1, 2, 3):
            write_state("a1", step=step)
            async with asyncio.timeout(5):  # wait for the log, not the (held back) broadcast
                while log.last("adw-state:a1").data.get("step") != step:  # type: ignore[union-attr,unused-ignore]
                    await asyncio.sleep(0.01)
        events = (await (await client.get("/api/v1/events?channel=adw-state:a1")).json())["events"]
        assert [e["data"]["step"] for e in events] == [0, 1, 2, 3]
        # All inside the window opened by the start-up publish: one message, the newest, at its end.
        trailing = await receive(ws)
        assert (trailing["seq"], trailing["data"]["step"]) == (4, 3)
