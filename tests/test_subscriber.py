"""The Python client and ``watch`` against a real service process, across a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from broadcaster.subscriber.stream import RECONNECT, socket_url, subscribe
from broadcaster.subscriber.watch import line
from tests.conftest import Workspace
from tests.helpers import Service, end, free_port, read_line, watch


def service_config(workspace: Workspace, port: int) -> str:
    return (
        f"[server]\nport = {port}\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        f"[adw]\nagents_dir = '{workspace.agents}'\ntrees_dir = '{workspace.trees}'\n"
        f"[event_log]\npath = '{workspace.root / 'events.db'}'\n"
    )


Inbox = dict[str, asyncio.Queue[dict[str, Any]]]


async def next_of(inbox: Inbox, channel: str, timeout: float = 10.0) -> dict[str, Any]:
    """Return the next message of ``channel``, failing after ``timeout``."""
    return await asyncio.wait_for(inbox.setdefault(channel, asyncio.Queue()).get(), timeout)


async def pump(source: AsyncIterator[dict[str, Any]], inbox: Inbox) -> None:
    async for message in source:
        await inbox.setdefault(message["channel"], asyncio.Queue()).put(message)


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    at_most, a_quarter = (dataclasses.replace(RECONNECT, random=r) for r in (lambda: 1.0, lambda: 0.25))
    assert [at_most.delay(n) for n in (1, 2, 3, 5, 6, 50)] == [1.0, 2.0, 4.0, 16.0, 30.0, 30.0]
    assert a_quarter.delay(4) == 2.0
    assert socket_url("http://h:1") == "ws://h:1/ws"
    assert socket_url("https://h/api/v1/") == "wss://h/api/v1/ws"
    with pytest.raises(ValueError, match="http"):
        socket_url("ftp://h")


async def test_the_python_client_sees_whole_data_and_resumes_across_a_restart(workspace, write_state) -> None:
    write_state("a1", issue_number=1, status="running", current_phase="plan", step=0)
    write_state("a2", issue_number=2, status="running", current_phase="plan", step=0)
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    url = f"http://127.0.0.1:{port}"
    channels = ["adw-monitor", "adw-state:a1"]
    patched: Inbox = {}
    whole: Inbox = {}
    states: list[str] = []
    tasks = [
        asyncio.create_task(pump(subscribe(url, channels, on_state=states.append), patched)),
        asyncio.create_task(pump(subscribe(url, channels, patches=False), whole)),
    ]
    try:
        for queue in (patched, whole):
            first = await next_of(queue, "adw-monitor")
            assert (first["seq"], len(first["data"]["workflows"])) == (1, 2)
            assert (await next_of(queue, "adw-state:a1"))["seq"] == 1
        write_state("a1", issue_number=1, status="running", current_phase="build", step=1)
        got, reference = await next_of(patched, "adw-monitor"), await next_of(whole, "adw-monitor")
        assert got == reference  # rebuilt from a patch, equal to the whole message
        assert got["data"]["workflows"][0]["current_phase"] == "build"
        state = await next_of(patched, "adw-state:a1")
        assert (state["seq"], state["data"]["step"]) == (2, 1)

        assert await service.stop() == 0
        write_state("a1", issue_number=1, status="failed", current_phase="build", step=2)  # while it is down
        service = await Service(workspace.root, service_config(workspace, port)).start()
        resumed = await next_of(patched, "adw-state:a1")
        assert (resumed["seq"], resumed["recovered"], resumed["data"]["step"]) == (3, True, 2)
        monitor = await next_of(patched, "adw-monitor")
        assert (monitor["seq"], monitor["recovered"], monitor["data"]["workflows"][-1]["status"]) == (3, True, "failed")
        assert states == ["connected", "reconnecting", "connected"]
        write_state("a2", issue_number=2, status="running", current_phase="test", step=1)
        got = await next_of(patched, "adw-monitor")
        reference = await next_of(whole, "adw-monitor")
        while reference["seq"] < got["seq"]:
            reference = await next_of(whole, "adw-monitor")
        # The reference may have reconnected after seq 4 and got it as its first frame, with
        # last_updated as of then (clock values are fresh in first frames); all else is equal.
        assert (got["seq"], {**got["data"], "last_updated": "-"}) == (4, {**reference["data"], "last_updated": "-"})
        assert [q.qsize() for q in patched.values()] == [0, 0]  # nothing it had came again
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.stop()


async def test_watch_prints_a_line_per_change_resumes_and_exits_0_on_ctrl_c(workspace, write_state) -> None:
    write_state("a1", issue_number=1, status="running", current_phase="plan")
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    proc = watch("adw-monitor", "--url", f"http://127.0.0.1:{port}")
    try:
        assert (await read_line(proc)).split(" ", 1)[1] == "adw-monitor #1 snapshot: 1 ADWs (1 running)"
        write_state("a1", issue_number=1, status="running", current_phase="build")
        assert (await read_line(proc)).split(" ", 1)[1] == "adw-monitor #2 a1 plan->build"
        assert await service.stop() == 0
        write_state("a1", issue_number=1, status="failed", current_phase="build")
        service = await Service(workspace.root, service_config(workspace, port)).start()
        assert (await read_line(proc)).split(" ", 1)[1] == "adw-monitor #3 recovered a1 running->failed"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        end(proc)
        await service.stop()


async def test_watch_json_prints_whole_messages(workspace, write_state) -> None:
    write_state("a1", issue_number=1, status="running", current_phase="plan", step=0)
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    proc = watch("adw-state:a1", "--json", "--url", f"http://127.0.0.1:{port}")
    try:
        first = orjson.loads(await read_line(proc))
        assert (first["type"], first["channel"], first["seq"], first["data"]["step"]) == (
            "adw_state_update",
            "adw-state:a1",
            1,
            0,
        )
    finally:
        end(proc)
        await service.stop()


async def test_watch_exits_0_quietly_when_its_reader_stops(workspace, write_state) -> None:
    write_state("a1", issue_number=1, status="running", step=0)
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    proc = watch("adw-state:a1", "--json", "--url", f"http://127.0.0.1:{port}")
    try:
        assert orjson.loads(await read_line(proc))["data"]["step"] == 0
        assert proc.stdout is not None
        proc.stdout.close()  # what `| head -n 1` does after its line
        write_state("a1", issue_number=1, status="running", step=1)  # the next line meets a closed pipe
        assert await asyncio.to_thread(proc.wait, 15) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        end(proc)
        await service.stop()


async def test_watch_gives_up_with_one_line_and_refuses_bad_channels() -> None:
    proc = watch("queue", "--url", f"http://127.0.0.1:{free_port()}", "--retry-for", "1")
    _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 1
    assert err.splitlines() == [
        f"adw-broadcaster watch: cannot reach {err.split('reach ')[1].split(' ')[0]} (tried for 1s)"
    ]
    proc = watch("nope")
    _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 2
    assert err.startswith("adw-broadcaster watch: unknown channel; the channels are ")
    assert len(err.splitlines()) == 1


def test_watch_lines_summarise_what_moved() -> None:
    message = {"channel": "queue", "seq": 9, "timestamp": "2026-11-26T10:00:05.000Z"}
    before = {"phases": [{"queue_id": "q1", "status": "pending"}, {"queue_id": "q2", "status": "pending"}]}
    after = {"phases": [{"queue_id": "q1", "status": "running"}, {"queue_id": "q3", "status": "pending"}]}
    text = line({**message, "data": after}, before)
    assert text.split(" ", 1)[1] == "queue #9 q1 pending->running, q3 new (pending), q2 gone"
    odd = line({**message, "channel": "adw-monitor", "data": {"workflows": "not a list"}}, None)
    assert odd.split(" ", 1)[1] == "adw-monitor #9 snapshot: 0 ADWs ()"
    broken = line({**message, "channel": "adw-monitor", "data": 17}, None)
    assert broken.split(" ", 1)[1] == "adw-monitor #9 changed"
