"""Supervision: a crashing part restarts with capped backoff, is reported until it recovers, stops when cancelled."""

from __future__ import annotations

import asyncio
import logging

import pytest

from broadcaster.channels.specs import CATALOG
from broadcaster.core.events import EventLog
from broadcaster.core.hub import Hub
from broadcaster.core.pipeline import Pipeline
from broadcaster.core.store import MemoryEventStore
from broadcaster.core.throttle import Throttle
from broadcaster.supervisor import Part, Supervisor
from broadcaster.web.keys import SUPERVISOR
from sources.tasks import wait_set
from tests.conftest import receive_settled, receive_until
from tests.helpers import eventually


def crashing(times: int, running: asyncio.Event, stopped: list[str]):
    """Return a part that raises ``times`` times, then runs until cancelled."""
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise ValueError("bad value")
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append("stopped")

    return work


async def test_a_crashing_part_restarts_with_capped_backoff_and_is_reported_until_it_recovers(caplog) -> None:
    changes: list[tuple[str, str | None]] = []
    supervisor = Supervisor(
        on_change=lambda p: changes.append((p.name, p.problem)), initial_delay=0.01, max_delay=0.04, stable_after=60
    )
    assert [supervisor.backoff(n) for n in range(1, 6)] == [0.01, 0.02, 0.04, 0.04, 0.04]
    running, stopped = asyncio.Event(), list[str]()
    with caplog.at_level(logging.WARNING, logger="broadcaster.supervisor"):
        task = asyncio.create_task(supervisor.run("reader", "adw_files", crashing(4, running, stopped)))
        await asyncio.wait_for(running.wait(), 5)
    assert supervisor.parts["reader"] == Part(
        "reader",
        "adw_files",
        restarts=4,
        streak=4,
        problem="reader crashed (ValueError: bad value); restart 4 in 0.04s",
        last_error="ValueError: bad value",
    )
    assert supervisor.problems() == {"adw_files": ["reader crashed (ValueError: bad value); restart 4 in 0.04s"]}
    crashes = [r for r in caplog.records if r.name == "broadcaster.supervisor"]
    assert [(r.levelname, r.exc_info is not None) for r in crashes] == [("ERROR", True)] + [("WARNING", False)] * 3
    supervisor.ok("reader")  # it made progress: up again
    assert (supervisor.problems(), supervisor.parts["reader"].streak) == ({}, 0)
    assert changes == [
        ("reader", f"reader crashed (ValueError: bad value); restart {n} in {d:g}s")
        for n, d in ((1, 0.01), (2, 0.02), (3, 0.04), (4, 0.04))
    ] + [("reader", None)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == ["stopped"]  # cancelling stops it for good, its cleanup run


async def test_running_for_stable_after_counts_as_recovered() -> None:
    supervisor = Supervisor(initial_delay=0.01, stable_after=0.05)
    running: asyncio.Event = asyncio.Event()
    task = asyncio.create_task(supervisor.run("poller", "webhook", crashing(1, running, [])))
    await asyncio.wait_for(running.wait(), 5)
    assert supervisor.problems() == {"webhook": ["poller crashed (ValueError: bad value); restart 1 in 0.01s"]}
    await eventually(lambda: supervisor.problems() == {})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_part_that_returns_is_restarted_too() -> None:
    supervisor = Supervisor(initial_delay=0.01)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1
        if runs > 2:
            await asyncio.Event().wait()

    task = asyncio.create_task(supervisor.run("once", "x", once))
    await eventually(lambda: runs == 3)
    assert supervisor.parts["once"].problem == "once crashed (stopped on its own); restart 2 in 0.02s"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_crashed_part_shows_in_system_status_until_it_recovers(start) -> None:
    client = await start()
    supervisor = client.app[SUPERVISOR]
    running: asyncio.Event = asyncio.Event()
    async with client.ws_connect("/ws/system-status") as ws:
        assert (await receive_settled(ws))["data"]["services"]["adw_files"]["status"] == "healthy"
        task = asyncio.create_task(supervisor.run("extra reader", "adw_files", crashing(1, running, [])))
        down = await receive_until(ws, lambda m: m["data"]["services"]["adw_files"]["status"] == "error")
        entry = down[-1]["data"]["services"]["adw_files"]
        assert entry["message"] == "extra reader crashed (ValueError: bad value); restart 1 in 0.5s"
        assert down[-1]["data"]["overall_status"] == "error"
        await asyncio.wait_for(running.wait(), 5)
        supervisor.ok("extra reader")
        up = await receive_until(ws, lambda m: m["data"]["services"]["adw_files"]["status"] == "healthy")
        assert up[-1]["data"]["overall_status"] == "healthy"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_cancelled_parent_stops_every_child_before_it_ends(caplog) -> None:
    """The demo's simulation, cancelled, stopped its first run only: the rest wrote into a removed workspace."""
    from sources.tasks import cancel_all_and_wait

    running: list[str] = []
    ended: list[str] = []

    async def child(name: str) -> None:
        running.append(name)
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)
            if name == "c":
                raise RuntimeError("c failed while stopping")

    async def parent() -> None:
        children = [asyncio.create_task(child(name), name=name) for name in "abc"]
        try:
            await asyncio.Event().wait()
        finally:
            await cancel_all_and_wait(children)

    task = asyncio.create_task(parent())
    await eventually(lambda: len(running) == 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == ["a", "b", "c"]
    assert [(r.levelname, r.getMessage(), str(r.exc_info[1])) for r in caplog.records if r.exc_info] == [
        ("ERROR", "task c failed while stopping", "c failed while stopping")
    ]


async def test_a_waiting_loop_stops_when_cancelled_as_its_event_is_set() -> None:
    """Python 3.11's ``asyncio.wait_for`` loses a cancellation that arrives as the event is set:
    a loop around it ran on and the service's shutdown waited for it forever (seen on a cluster
    view). ``wait_set`` keeps it, for every loop of the service that waits on an event."""
    event = asyncio.Event()
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            await wait_set(event, 5)
            event.clear()
            turns += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop is waiting
    event.set()
    task.cancel()  # in the same turn of the event loop
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert turns == 0
    assert await wait_set(asyncio.Event(), 0.01) is False
    done = asyncio.Event()
    done.set()
    assert await wait_set(done, None) is True


async def test_the_pipeline_stops_when_cancelled_as_an_event_wakes_it() -> None:
    log = EventLog(MemoryEventStore(), catalog=CATALOG)
    pipeline = Pipeline(log, Throttle(60), Hub(catalog=CATALOG))
    pipeline.update("queue", {"phases": [], "total": 1, "paused": False})  # sent at once: a 60 s window starts
    pipeline.update("queue", {"phases": [], "total": 2, "paused": False})  # held until the window ends
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0)  # waiting for the window's end, or a wake
    pipeline.update("queue", {"phases": [], "total": 3, "paused": False})  # wakes the run loop
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
