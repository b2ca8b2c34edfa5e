"""The ``Backplane`` seam: the in-memory bus behaves as Redis does, and the cluster code runs on it.

The contract test runs the same calls against ``MemoryBackplane`` and ``RedisBackplane`` on a
real redis-server, so a test on the memory bus stands for Redis. Then a publisher and a follower
share one memory bus: what a node publishes reaches the view; a bus that is down is an error on
both and a reconnect brings the node's state back; a flushed bus is published again; a key of the
wrong type costs its channel only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from broadcaster.cluster.backplane import Backplane, Refused, Unreachable
from broadcaster.cluster.follower import Batch, BusFollower, Newest
from broadcaster.cluster.memory_backplane import MemoryBackplane
from broadcaster.cluster.publisher import Publisher
from broadcaster.cluster.redis_backplane import RedisBackplane
from broadcaster.core.events import Event
from broadcaster.core.snapshot import digest
from sources.tasks import cancel_and_wait
from tests.helpers import eventually
from tests.servers import RedisServer

PutString = Callable[[str, bytes], Awaitable[None]]
Bus = tuple[Backplane, PutString, Callable[[], Awaitable[int]]]


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Bus]:
    """Yield a connected backplane, a way to put a plain string at a key (another writer), and its blocked reads."""
    if request.param == "memory":
        memory = MemoryBackplane()

        async def put_memory(key: str, value: bytes) -> None:
            memory.put_string(key, value)

        async def blocked_memory() -> int:
            return memory.blocked

        await memory.connect()
        yield memory, put_memory, blocked_memory
        return
    directory = tmp_path / "redis"
    directory.mkdir()
    server = await RedisServer(directory).start()
    raw = aioredis.from_url(server.url)
    backplane = RedisBackplane(server.url, socket_timeout=5)

    async def put_redis(key: str, value: bytes) -> None:
        await raw.delete(key)
        await raw.set(key, value)

    async def blocked_redis() -> int:
        return int((await raw.info("clients"))["blocked_clients"])

    try:
        await backplane.connect()
        yield backplane, put_redis, blocked_redis
    finally:
        await backplane.close()
        await raw.aclose()
        server.stop()


async def test_records_and_hashes_behave_the_same_on_both(bus: Bus) -> None:
    backplane, put_string, _ = bus
    first = await backplane.put_record("adwb:node:a", "adwb:nodes", "a", b'{"n": 1}', 60_000, ["s1", "s2"])
    assert first == (None, [None, None], 0)
    await backplane.append([("s1", {"k": "v"}, 10)])
    second = await backplane.put_record("adwb:node:a", "adwb:nodes", "a", b'{"n": 2}', 60_000, ["s1", "s2"])
    assert second == (b'{"n": 1}', [None, None], 1)
    assert await backplane.hash_all("adwb:nodes") == {b"a": b'{"n": 2}'}
    assert await backplane.hash_all("missing") == {}
    assert await backplane.values(["adwb:node:a", "missing", "s1"]) == [b'{"n": 2}', None, None]
    assert await backplane.values([]) == []
    assert await backplane.kinds(["s1", "adwb:nodes", "adwb:node:a", "missing"]) == ["stream", "hash", "string", "none"]
    await put_string("adwb:nodes", b"not a hash")
    with pytest.raises(Refused, match="WRONGTYPE"):
        await backplane.hash_all("adwb:nodes")
    before, written, found = await backplane.put_record("adwb:node:a", "adwb:nodes", "a", b"{}", 60_000, [])
    assert (before, found) == (b'{"n": 2}', 0)
    assert written[0] is None and isinstance(written[1], Refused) and "WRONGTYPE" in str(written[1])


async def test_streams_behave_the_same_on_both(bus: Bus) -> None:
    backplane, put_string, _ = bus
    assert await backplane.newest(["s1"]) == [None]
    assert await backplane.read({"s1": b"0-0"}, count=10, block_ms=20) == []  # waited, nothing came
    await put_string("bad", b"a string")
    results = await backplane.append([("s1", {"n": 1, "t": "x"}, 10), ("bad", {"n": 2}, 10), ("s1", {"n": 3}, 10)])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Refused) and "WRONGTYPE" in str(results[1])
    newest = await backplane.newest(["s1", "missing", "bad"])
    assert newest[0] is not None and not isinstance(newest[0], Refused)
    assert (newest[0][1], newest[1]) == ({b"n": b"3"}, None)
    assert isinstance(newest[2], Refused)
    read = await backplane.read({"s1": b"0-0"}, count=10, block_ms=20)
    assert [(key, [fields for _, fields in entries]) for key, entries in read] == [
        ("s1", [{b"n": b"1", b"t": b"x"}, {b"n": b"3"}])
    ]
    first_id = read[0][1][0][0]
    later = await backplane.read({"s1": first_id}, count=10, block_ms=20)
    assert [[fields for _, fields in entries] for _, entries in later] == [[{b"n": b"3"}]]
    with pytest.raises(Refused, match="WRONGTYPE"):
        await backplane.read({"s1": b"0-0", "bad": b"0-0"}, count=10, block_ms=20)


async def test_a_blocked_read_wakes_for_an_append_on_both(bus: Bus) -> None:
    backplane, _, blocked = bus
    if isinstance(backplane, RedisBackplane):  # one connection cannot block and write at once
        writer: Backplane = RedisBackplane(backplane.url, socket_timeout=5)
        await writer.connect()
    else:
        writer = backplane
    await backplane.append([("s1", {"n": 1}, 10)])
    last = (await backplane.newest(["s1"]))[0]
    assert last is not None and not isinstance(last, Refused)
    reading = asyncio.create_task(backplane.read({"s1": last[0]}, count=10, block_ms=10_000))
    await eventually(lambda: _is_one(blocked()))
    await writer.append([("s1", {"n": 2}, 10)])
    read = await asyncio.wait_for(reading, 5)
    assert [[fields for _, fields in entries] for _, entries in read] == [[{b"n": b"2"}]]
    if writer is not backplane:
        await writer.close()


async def _is_one(count: Awaitable[int]) -> bool:
    return await count == 1


def event(channel: str, seq: int, data: Any, kind: str) -> Event:
    return Event(channel, seq, kind, data, digest(data, ()), 1000.0 + seq)


class Node:
    """A publisher on the memory bus, run as the service runs it; its current state is ``events``."""

    def __init__(self, bus: MemoryBackplane, name: str) -> None:
        self.events: dict[str, Event] = {}
        self.states: list[tuple[str, str]] = []
        self.publisher = Publisher(
            bus,
            name,
            current=lambda: list(self.events.values()),
            record=lambda: {"name": name, "version": "test", "address": "127.0.0.1:1", "last_seen": time.time()},
            keep=10,
            queue_max=100,
            refresh_interval=0.05,
            node_timeout=5.0,
            on_state=lambda level, message: self.states.append((level, message)),
        )
        self.task: asyncio.Task[None] | None = None

    def publish(self, e: Event) -> None:
        self.events[e.channel] = e
        self.publisher.offer(e)

    def start(self) -> None:
        self.task = asyncio.create_task(self.publisher.run())

    async def stop(self) -> None:
        if self.task is not None:
            await cancel_and_wait(self.task)


class View:
    """A follower on the memory bus; ``data`` is the newest it read per (node, channel)."""

    def __init__(self, bus: MemoryBackplane) -> None:
        self.follower = BusFollower(bus, forget_after=60, scan_interval=0.05, on_state=lambda *s: None)
        self.data: dict[tuple[str, str], Newest] = {}
        self.batches: list[Batch] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.follower.changes():
            self.batches.append(batch)
            self.data.update(batch.data)

    async def stop(self) -> None:
        await cancel_and_wait(self.task)


QUEUE = {"phases": [{"queue_id": 1, "phase": "build"}], "paused": False}


async def test_what_a_node_publishes_reaches_the_view_through_the_memory_bus() -> None:
    bus = MemoryBackplane()
    node = Node(bus, "n1")
    node.publish(event("queue", 1, QUEUE, "queue_update"))
    node.start()
    view = View(bus)
    try:
        await eventually(lambda: ("n1", "queue") in view.data)
        assert view.data[("n1", "queue")] == Newest(QUEUE, digest(QUEUE, ()))
        changed = {**QUEUE, "paused": True}
        node.publish(event("queue", 2, changed, "queue_update"))
        await eventually(lambda: view.data[("n1", "queue")].data == changed)
        assert node.publisher.status_entry() == ("backplane", "healthy", "publishing to memory as n1", {})
        assert view.follower.status_entry() == ("backplane", "healthy", "reading 1 node(s) from memory", {})
        assert sorted(k for k in bus.keys() if k.startswith("adwb:ch:")) == ["adwb:ch:n1:queue"]
    finally:
        await view.stop()
        await node.stop()


async def test_a_bus_that_is_down_is_an_error_on_both_and_its_return_brings_the_state_back() -> None:
    bus = MemoryBackplane()
    node = Node(bus, "n1")
    node.start()
    view = View(bus)
    try:
        await eventually(lambda: node.publisher.state[0] == "healthy")
        bus.down = True
        await eventually(lambda: node.publisher.state[0] == "error" and view.follower.state[0] == "error")
        assert node.publisher.state[1] == "cannot reach memory: memory backplane is down; serving locally, retrying"
        assert any(b.problem is not None for b in view.batches)
        node.publish(event("queue", 1, QUEUE, "queue_update"))  # while the bus is away
        bus.down = False
        await eventually(lambda: ("n1", "queue") in view.data, timeout=10)
        assert view.data[("n1", "queue")].data == QUEUE
        await eventually(lambda: node.publisher.state[0] == "healthy" and view.follower.state[0] == "healthy")
    finally:
        await view.stop()
        await node.stop()


async def test_a_flushed_bus_is_published_again_and_a_wrong_key_costs_its_channel_only() -> None:
    bus = MemoryBackplane()
    node = Node(bus, "n1")
    node.publish(event("queue", 1, QUEUE, "queue_update"))
    node.start()
    try:
        await eventually(lambda: "adwb:ch:n1:queue" in bus.keys())
        bus.flush()
        await eventually(lambda: "adwb:ch:n1:queue" in bus.keys())  # the node noticed at its next refresh
        bus.put_string("adwb:ch:n1:workflows", b"another writer's")
        node.publish(event("workflows", 1, [], "workflows_update"))
        node.publish(event("queue", 2, {**QUEUE, "paused": True}, "queue_update"))
        await eventually(lambda: node.publisher.state[0] == "degraded")
        assert node.publisher.state[1].startswith(
            "publishing to memory as n1; Redis refuses writes to 1 key(s), e.g. adwb:ch:n1:workflows: WRONGTYPE"
        )
        newest = (await bus.newest(["adwb:ch:n1:queue"]))[0]
        assert newest is not None and not isinstance(newest, Refused) and newest[1][b"seq"] == b"2"
        with pytest.raises(Unreachable):
            bus.down = True
            await bus.connect()
    finally:
        await node.stop()
