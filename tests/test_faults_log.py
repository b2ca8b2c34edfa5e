"""The event log under faults: repeated crashes, a full disk, corrupt rows, a damaged file."""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broadcaster.channels.specs import CATALOG
from broadcaster.core.events import Event
from broadcaster.core.log_file import CRASH_SEQ_GAP
from broadcaster.core.sqlite_store import SqliteEventStore
from broadcaster.web.keys import EVENT_LOG
from tests.conftest import EPOCH, receive, receive_until
from tests.helpers import Service

STATE = "/ws/adw-state/a1"
CONFIG = (
    '[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n[adw]\nagents_dir = "agents"\ntrees_dir = "trees"\n'
    '[event_log]\npath = "events.db"\n'
)


def query(path: Path, sql: str) -> int:
    """Read one number from the log (only while no service holds it)."""
    with sqlite3.connect(path) as db:
        [(value,)] = db.execute(sql).fetchall()
    db.close()
    return int(value)


async def test_two_quick_crashes_never_reuse_a_seq(workspace, write_state) -> None:
    write_state("a1", step=0)
    log = workspace.root / "events.db"
    config = CONFIG + "flush_interval = 30\n"  # nothing is committed between start-up and the kill

    async def connect(
        service: Service, path: str = STATE
    ) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
        session = aiohttp.ClientSession()
        return session, await session.ws_connect(service.url(path))

    service = await Service(workspace.root, config).start()  # a clean first run stores its events
    session, ws = await connect(service)
    first = await receive(ws)
    await session.close()
    assert await service.stop() == 0
    epoch = first["epoch"]

    service = await Service(workspace.root, config).start()  # run 1: a change is sent, then kill -9
    try:
        session, ws = await connect(service)
        await receive(ws)
        write_state("a1", step=1)
        assert (await receive(ws))["seq"] == first["seq"] + 1
        await session.close()
    finally:
        await service.stop(signal.SIGKILL)
    floor = query(log, "SELECT MAX(seq) FROM events") + CRASH_SEQ_GAP  # above everything stored
    service = await Service(workspace.root, config).start()  # run 2: above the floor, sent, kill -9 again
    try:
        session, ws = await connect(service)
        snapshot = await receive(ws)
        assert (snapshot["seq"], snapshot["data"]["step"], snapshot["epoch"]) == (floor + 1, 1, epoch)
        write_state("a1", step=2)
        sent = await receive(ws)
        assert (sent["seq"], sent["data"]["step"]) == (floor + 2, 2)
        await session.close()
    finally:
        await service.stop(signal.SIGKILL)
    assert query(log, "SELECT value FROM meta WHERE key = 'seq_floor'") == floor  # durable before serving
    service = await Service(workspace.root, config).start()  # run 3: floor + 2 must not come back
    try:
        session, ws = await connect(service)
        snapshot = await receive(ws)
        assert (snapshot["seq"], snapshot["data"]["step"]) == (floor + CRASH_SEQ_GAP + 1, 2)
        await session.close()
        session, ws = await connect(service, f"{STATE}?since={floor + 2}&epoch={epoch}")
        resumed = await receive(ws)  # the client that saw floor + 2 gets the newest state, not a reused seq
        assert (resumed["seq"], resumed["recovered"], resumed["data"]["step"]) == (floor + CRASH_SEQ_GAP + 1, False, 2)
        await session.close()
    finally:
        await service.stop()
    assert query(log, "SELECT value FROM meta WHERE key = 'seq_floor'") == floor + CRASH_SEQ_GAP


async def test_a_full_disk_is_shown_bounded_and_recovered_from(workspace, write_state) -> None:
    write_state("a1", step=0)
    service = await Service(workspace.root, CONFIG + "flush_interval = 0.05\nmax_pending = 40\n").start()
    try:
        async with aiohttp.ClientSession() as session:
            status = await session.ws_connect(service.url("/ws/system-status"))
            await receive(status)
            ws = await session.ws_connect(service.url(STATE))
            await receive(ws)
            # A real write failure: files of this process may not grow past 1 byte (EFBIG, "disk full").
            resource.prlimit(service.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
            for step in range(1, 201):
                write_state("a1", step=step)
                assert (await receive(ws))["data"]["step"] == step
            down = await receive_until(status, lambda m: m["data"]["services"]["backend_api"]["status"] == "error")
            message = down[-1]["data"]["services"]["backend_api"]["message"]
            assert message.startswith(f"event log: cannot write {workspace.root / 'events.db'} (")
            answer = await (await session.get(service.url("/api/v1/system-status"))).json()
            waiting = re.search(r"; (\d+) events waiting in memory$", answer["services"]["backend_api"]["message"])
            assert waiting is not None and 1 <= int(waiting.group(1)) <= 40  # bounded, not 200+
            resource.prlimit(service.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            await receive_until(status, lambda m: m["data"]["services"]["backend_api"]["status"] == "healthy", 15)
            await ws.close()
            await status.close()
        assert await service.stop() == 0
    finally:
        service.kill()
    with sqlite3.connect(workspace.root / "events.db") as db:
        [(data,)] = db.execute(
            "SELECT data FROM events WHERE channel = 'adw-state:a1' ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
    assert b'"step":200' in data  # the newest state made it to disk once the disk took writes again
    assert "Traceback" not in service.log


async def test_list_channels_stored_as_deltas_read_back_whole_after_a_full_disk(workspace, write_state) -> None:
    """Pending events dropped while the disk refused writes include the bases of later deltas."""
    for n in range(5):
        write_state(f"a{n}", issue_number=n + 1, status="running", current_cost=0.0, nl_input="x" * 300)
    service = await Service(workspace.root, CONFIG + "flush_interval = 0.05\nmax_pending = 6\n").start()
    live: dict[int, dict] = {}
    try:
        async with aiohttp.ClientSession() as session:
            status = await session.ws_connect(service.url("/ws/system-status"))
            ws = await session.ws_connect(service.url("/ws/adw-monitor"))
            await receive(ws)
            resource.prlimit(service.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
            for step in range(1, 41):
                if step == 31:  # the disk takes writes again: what comes after is stored as deltas
                    resource.prlimit(service.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
                    for wanted in ("error", "healthy"):
                        await receive_until(status, log_is(wanted), 15)
                adw_id = f"a{step % 5}"
                write_state(adw_id, issue_number=step % 5 + 1, status="running", current_cost=float(step), nl_input="x")
                [*_, message] = await receive_until(ws, shows(adw_id, float(step)))
                live[message["seq"]] = message["data"]
            newest = max(live)
            deadline = time.monotonic() + 15
            while (stored := await events_api(session, service, "adw-monitor"))[-1]["seq"] != newest:
                assert time.monotonic() < deadline, "the newest event never reached the events API"
                await asyncio.sleep(0.05)
            await ws.close()
            await status.close()
        assert await service.stop() == 0
    finally:
        service.kill()
    assert len(stored) < len(live)  # some were dropped while the disk was full
    assert sum(1 for e in stored if e["seq"] in live) >= 10
    for event in stored:
        if event["seq"] in live:
            assert without_clock(event["data"]) == without_clock(live[event["seq"]])
    with sqlite3.connect(workspace.root / "events.db") as db:
        bases = [b for (b,) in db.execute("SELECT base FROM events WHERE channel = 'adw-monitor' ORDER BY seq")]
    db.close()
    assert None in bases and any(b is not None for b in bases)  # stored whole and as deltas
    assert "skipped" not in service.log and "Traceback" not in service.log


async def test_a_delta_never_stands_on_a_pending_event_that_was_dropped(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db", catalog=CATALOG, max_pending=2)
    await store.open()
    states = {
        n: {"phases": [{"queue_id": f"q{i}", "n": n * (i == 0), "pad": "p" * 200} for i in range(10)]}
        for n in range(1, 7)
    }
    refused = resource.getrlimit(resource.RLIMIT_FSIZE)

    async def refused_write(*seqs: int) -> None:
        """Append queue events and try to commit them while this process may not grow a file (EFBIG)."""
        for seq in seqs:
            store.append(Event("queue", seq, "queue_update", states[seq], f"d{seq}", 1.0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, refused[1]))
        try:
            with pytest.raises(sqlite3.Error):
                await store.flush()  # encodes what is pending (deltas against the previous event), then fails
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, refused)

    def crowd(seq: int) -> None:
        for n in (seq, seq + 1):  # two more events: past max_pending, older pending events give way
            store.append(Event("routes", n, "routes_update", [n], f"r{n}", 1.0))

    store.append(Event("queue", 1, "queue_update", states[1], "d1", 1.0))
    await store.flush()
    await refused_write(2)
    await refused_write(3)  # 3 is encoded against 2
    store.append(Event("queue", 4, "queue_update", states[4], "d4", 1.0))
    crowd(1)  # 2 and 3 are dropped: 4 must not be encoded against 3
    await store.flush()
    await refused_write(5)  # against 4, which is stored
    await refused_write(6)  # against 5
    crowd(3)  # 5 is dropped: 6, encoded already, must be encoded again
    await store.flush()
    assert [(e.seq, e.data) for _, e in await store.events("queue", 0, 10)] == [(n, states[n]) for n in (1, 4, 6)]
    assert store.undecodable == 0
    await store.close()


def log_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: bool(m["data"]["services"]["backend_api"]["status"] == status)


def shows(adw_id: str, cost: float) -> Callable[[dict[str, Any]], bool]:
    return lambda m: any(w["adw_id"] == adw_id and w["current_cost"] == cost for w in m["data"]["workflows"])


async def events_api(session: aiohttp.ClientSession, service: Service, channel: str) -> list[dict]:
    async with session.get(service.url(f"/api/v1/events?channel={channel}&limit=1000")) as answer:
        return list((await answer.json())["events"])


def without_clock(data: dict) -> dict:
    return {**data, "last_updated": None, "workflows": [{**w, "duration_seconds": None} for w in data["workflows"]]}


def patch_bytes(directory: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` with ``new`` (same length) wherever the log's files hold it."""
    assert len(old) == len(new)
    found = 0
    for path in directory.iterdir():
        if path.name.startswith("events.db"):
            raw = path.read_bytes()
            found += raw.count(old)
            path.write_bytes(raw.replace(old, new))
    assert found >= 1


async def test_a_corrupt_stored_event_is_skipped_and_counted(start, write_state, workspace) -> None:
    write_state("a1", step=1, mark="fine-one")
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect(STATE) as ws:
        await receive(ws)
        for step, mark in ((2, "CORRUPTME"), (3, "fine-three")):
            write_state("a1", step=step, mark=mark)
            await receive(ws)
    await client.close()
    patch_bytes(workspace.root / ".state", b'"CORRUPTME"', b'"CORRUP\x00\x01\x02"')  # no longer JSON

    again = await start(broadcast__min_interval=0)  # starts: no traceback, same history
    body = await (await again.get("/api/v1/events?channel=adw-state:a1")).json()
    assert [e["data"]["mark"] for e in body["events"]] == ["fine-one", "fine-three"]
    assert [e["seq"] for e in body["events"]] == [1, 3]
    store = again.app[EVENT_LOG].store
    assert isinstance(store, SqliteEventStore) and store.undecodable == 1


async def test_a_corrupt_newest_event_keeps_its_seq(start, write_state, workspace) -> None:
    write_state("a1", step=1, mark="fine-one")
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect(STATE) as ws:
        await receive(ws)
        write_state("a1", step=2, mark="CORRUPTME")
        newest = await receive(ws)
    await client.close()
    patch_bytes(workspace.root / ".state", b'"CORRUPTME"', b'"CORRUP\x00\x01\x02"')
    again = await start(broadcast__min_interval=0)
    async with again.ws_connect(STATE) as ws:
        snapshot = await receive(ws)
    # Its data is unknown, its seq is not reused: the file's state comes back as the next seq.
    assert (snapshot["seq"], snapshot["data"]) == (newest["seq"] + 1, {"adw_id": "a1", "step": 2, "mark": "CORRUPTME"})


async def test_a_damaged_log_is_moved_aside_and_a_new_history_begins(start, workspace) -> None:
    path = workspace.root / ".state" / "events.db"
    path.parent.mkdir()
    store = SqliteEventStore(path, catalog=CATALOG)
    old_epoch = (await store.open()).epoch
    for seq in range(1, 3001):
        store.append(Event("adw-state:a1", seq, "adw_state_update", {"step": seq, "pad": "p" * 150}, f"d{seq}", 1.0))
    await store.close()
    pages = path.stat().st_size // 4096
    with path.open("r+b") as fh:  # mid-file damage: a b-tree page header overwritten
        fh.seek((pages // 2) * 4096)
        fh.write(b"\xff" * 64)
    client = await start()
    body = await (await client.get("/api/v1/events?channel=adw-state:a1")).json()
    assert (body["epoch"], body["events"]) == (EPOCH, [])
    assert body["epoch"] != old_epoch
    assert [p.name.split("-")[0] for p in path.parent.iterdir() if "unreadable" in p.name] == ["events.db.unreadable"]


async def test_pending_events_are_bounded_keeping_each_channels_newest(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db", catalog=CATALOG, max_pending=10, batch_max=1000)
    await store.open()
    for seq in range(1, 31):  # written while nothing flushes, as when the disk refuses
        for channel in ("queue", "workflows", "adw-monitor"):
            store.append(Event(channel, seq, f"{channel}_update", {"seq": seq}, f"d{seq}", 1.0))
    assert len(await store.events(None, 0, 1000)) <= 10
    await store.flush()
    for channel in ("queue", "workflows", "adw-monitor"):
        kept = [e.seq for _, e in await store.events(channel, 0, 1000)]
        assert kept[-1] == 30  # the newest state of each channel is never the one dropped
        assert store.contiguous_from(channel) == kept[0]  # history is vouched for only after the hole
    assert store.superseded == 90 - len(await store.events(None, 0, 1000))
    await store.close()
