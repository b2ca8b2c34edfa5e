"""Node loss in the cluster view: marked, then forgotten; back with new data, unmarked.

The view's bookkeeping runs here against an in-memory outlet (what Feeds does with the channels
is covered end to end in test_cluster_view); the reader's part, which nodes count as gone and
which as forgotten, runs against a real redis-server with an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from broadcaster.cluster.follower import Batch, BusFollower, Newest
from broadcaster.cluster.redis_backplane import RedisBackplane
from broadcaster.cluster.view import ClusterView
from broadcaster.core.events import Event
from broadcaster.core.snapshot import digest
from tests.servers import RedisServer


class MemoryOutlet:
    """The view's channels as they were last offered, and how often system status was asked for."""

    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}
        self.history_rows: list[dict[str, Any]] = []
        self.status_refreshes = 0
        self.reported_parts: list[str] = []

    def offer(self, channel: str, build: Callable[[], Any]) -> None:
        built = build()
        self.channels[channel] = built[0] if isinstance(built, tuple) else built

    def refresh_status(self) -> None:
        self.status_refreshes += 1

    def reported(self, part: str) -> None:
        self.reported_parts.append(part)


def monitor(*items: tuple[str, str]) -> dict[str, Any]:
    workflows = [{"adw_id": i, "status": s, "start_time": f"2026-11-25T0{n}:00"} for n, (i, s) in enumerate(items)]
    return {"workflows": workflows, "summary": {}, "last_updated": ""}


def batch(*parts: tuple[str, str, Any], alive: set[str] | None = None, gone: set[str] = set()) -> Batch:  # noqa: B006
    return Batch(
        {(node, channel): Newest(data, digest(data)) for node, channel, data in parts},
        alive=None if alive is None else frozenset(alive),
        gone=frozenset(gone),
    )


def rows(outlet: MemoryOutlet) -> list[tuple[str, str, str | None]]:
    return [(w["adw_id"], w["node"], w.get("node_status")) for w in outlet.channels["adw-monitor"]["workflows"]]


def test_a_lost_node_is_marked_then_forgotten_and_back_with_new_data_unmarked() -> None:
    outlet = MemoryOutlet()
    restored = [Event("adw-state:old", 3, "adw_state_update", {"adw_id": "old"}, "d", 0.0)]
    view = ClusterView(outlet, current=lambda: restored)
    view.apply(
        batch(
            ("a", "adw-monitor", monitor(("a1", "running"))),
            ("b", "adw-monitor", monitor(("b1", "running"), ("b2", "completed"))),
            ("b", "adw-state:b1", {"adw_id": "b1", "step": 1}),
            alive={"a", "b"},
        )
    )
    assert rows(outlet) == [("a1", "a", None), ("b1", "b", None), ("b2", "b", None)]
    assert outlet.channels["adw-state:b1"] == {"adw_id": "b1", "step": 1, "node": "b"}
    assert outlet.channels["adw-state:old"] == {}  # restored, but no node holds it any more
    assert outlet.status_refreshes == 1

    view.apply(batch(alive={"a"}, gone={"b"}))  # b's record expired: its last state stays, marked
    assert rows(outlet) == [("a1", "a", None), ("b1", "b", "unreachable"), ("b2", "b", "unreachable")]
    assert outlet.channels["adw-state:b1"] == {"adw_id": "b1", "step": 1, "node": "b", "node_status": "unreachable"}
    assert view.unreachable == frozenset({"b"})

    view.apply(batch(alive={"a"}, gone={"b"}))  # the same liveness again: nothing is offered again
    assert outlet.status_refreshes == 2

    # Back, with different data: b2 is gone from it, b1 is unmarked.
    view.apply(batch(("b", "adw-monitor", monitor(("b1", "completed"))), alive={"a", "b"}))
    assert rows(outlet) == [("a1", "a", None), ("b1", "b", None)]
    assert outlet.channels["adw-state:b2"] == {}
    assert outlet.channels["adw-state:b1"] == {"adw_id": "b1", "step": 1, "node": "b"}

    view.apply(batch(alive={"a"}, gone={"b"}))
    view.apply(batch(alive={"a"}))  # forget_after passed: the reader stopped following b
    assert rows(outlet) == [("a1", "a", None)]
    assert outlet.channels["adw-state:b1"] == {}
    assert outlet.channels["adw-monitor"]["summary"] == {
        "total": 1,
        "running": 1,
        "completed": 0,
        "failed": 0,
        "paused": 0,
        "stalled": 0,
    }


def test_an_adw_on_two_nodes_comes_from_a_reachable_one() -> None:
    outlet = MemoryOutlet()
    view = ClusterView(outlet, current=list)
    view.apply(
        batch(
            ("a", "adw-monitor", monitor(("x", "running"))),
            ("b", "adw-monitor", monitor(("x", "running"))),
            ("a", "adw-state:x", {"adw_id": "x", "on": "a"}),
            ("b", "adw-state:x", {"adw_id": "x", "on": "b"}),
            alive={"a", "b"},
        )
    )
    assert outlet.channels["adw-state:x"] == {"adw_id": "x", "on": "a", "node": "a"}  # by name
    view.apply(batch(alive={"b"}, gone={"a"}))
    assert outlet.channels["adw-state:x"] == {"adw_id": "x", "on": "b", "node": "b"}  # reachable first


def test_the_webhook_status_is_one_reachable_node_s_that_answers() -> None:
    outlet = MemoryOutlet()
    view = ClusterView(outlet, current=list)
    view.apply(
        batch(
            ("a", "webhook-status", {"status": "error", "message": "connection refused"}),
            ("b", "webhook-status", {"status": "healthy", "uptime": 5}),
            ("c", "webhook-status", {"status": "healthy", "uptime": 9}),
            alive={"a", "b", "c"},
        )
    )
    assert outlet.channels["webhook-status"] == {"status": "healthy", "uptime": 5, "node": "b"}
    view.apply(batch(alive={"a", "c"}, gone={"b"}))
    assert outlet.channels["webhook-status"] == {"status": "healthy", "uptime": 9, "node": "c"}
    view.apply(batch(alive=set()))  # every node forgotten
    assert outlet.channels["webhook-status"] == {"status": "unknown", "message": "not polled yet"}


async def first_batch(reader: BusFollower) -> Batch:
    changes = reader.changes()
    try:
        return await anext(changes)
    finally:
        await changes.aclose()


async def test_the_reader_counts_an_expired_node_gone_until_forget_after(redis_server: RedisServer) -> None:
    states: list[tuple[str, str]] = []
    reader = BusFollower(
        RedisBackplane(redis_server.url, socket_timeout=10),
        forget_after=3600,
        scan_interval=0.1,
        on_state=lambda *s: states.append(s),
    )
    empty = await first_batch(reader)
    assert (empty.alive, empty.gone, states) == (
        frozenset(),
        frozenset(),
        [("degraded", f"no node has published to {redis_server.url} yet (is [backplane] url the same on the nodes?)")],
    )
    client = aioredis.from_url(redis_server.url)
    now = time.time()
    for name, seen in (("alive", now), ("lost", now - 60), ("long-lost", now - 7200)):
        await client.hset("adwb:nodes", name, orjson.dumps({"name": name, "last_seen": seen}))
    await client.set("adwb:node:alive", b"{}", px=60_000)
    await client.aclose()
    first = await first_batch(reader)
    assert (first.alive, first.gone) == (frozenset({"alive"}), frozenset({"lost"}))
    assert states[1:] == [("healthy", f"reading 1 node(s) from {redis_server.url}; not heard from: lost")]


def test_the_nodes_services_uptimes_are_as_of_now_when_read() -> None:
    outlet = MemoryOutlet()
    now = [datetime(2026, 11, 26, 10, 1, tzinfo=UTC).timestamp()]
    view = ClusterView(outlet, current=list, clock=lambda: now[0])
    entry = {"name": "database", "status": "healthy", "uptime_seconds": 30.0, "uptime_human": "30s", "message": "ok"}
    report = {"timestamp": "2026-11-26T10:00:00.000Z", "services": {"database": entry}, "overall_status": "healthy"}
    view.apply(batch(("a", "system-status", report), alive={"a"}))
    merged = view.system_status({"services": {}})
    assert merged["services"]["a/database"]["uptime_seconds"] == 30.0  # as the node said, at its timestamp
    fresh = view.refreshed(merged)
    assert (fresh["services"]["a/database"]["uptime_seconds"], fresh["services"]["a/database"]["uptime_human"]) == (
        90.0,
        "1m 30s",
    )
    view.apply(batch(alive=set(), gone={"a"}))
    now[0] += 120
    lost = view.refreshed(view.system_status({"services": {}}))["services"]["a/node"]
    assert (lost["status"], lost["uptime_seconds"], lost["uptime_human"]) == ("error", 0.0, "error for 2m 0s")


async def test_a_gap_in_a_nodes_changes_index_makes_the_reader_read_it_whole(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)

    async def publish(channel: str, data: Any, kind: str) -> None:
        await client.xadd(f"adwb:ch:n1:{channel}", {"node": "n1", "type": kind, "data": orjson.dumps(data)})

    record = orjson.dumps({"name": "n1", "last_seen": time.time()})
    await client.hset("adwb:nodes", "n1", record)
    await client.set("adwb:node:n1", record, px=60_000)
    await publish("queue", {"phases": [], "total": 0, "paused": False}, "queue_update")
    await client.xadd("adwb:changes:n1", {"session": "s1", "n": 0, "channels": "queue"})
    reader = BusFollower(
        RedisBackplane(redis_server.url, socket_timeout=10),
        forget_after=3600,
        scan_interval=30,
        on_state=lambda *s: None,
    )
    changes = reader.changes()
    try:
        first = await anext(changes)
        assert set(first.data) == {("n1", "queue")}
        await publish("queue", {"phases": [], "total": 0, "paused": True}, "queue_update")  # never named: missed
        await publish("workflows", [{"adw_id": "w1", "issue_number": 1}], "workflows_update")
        await client.xadd("adwb:changes:n1", {"session": "s1", "n": 1, "channels": "workflows"})
        second = await anext(changes)
        assert {k: v.data for k, v in second.data.items()} == {
            ("n1", "workflows"): [{"adw_id": "w1", "issue_number": 1}]
        }
        await client.xadd("adwb:changes:n1", {"session": "s1", "n": 5, "channels": "workflows"})  # 2-4 trimmed away
        third = await anext(changes)
        assert {k: v.data for k, v in third.data.items()} == {  # read whole: what it missed, not what was named
            ("n1", "queue"): {"phases": [], "total": 0, "paused": True}
        }
    finally:
        await changes.aclose()
        await client.aclose()


async def test_a_nodes_key_of_another_type_is_said_once_and_the_reader_goes_on(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    await client.set("adwb:nodes", "not a hash")
    await client.aclose()
    states: list[tuple[str, str]] = []
    reader = BusFollower(
        RedisBackplane(redis_server.url, socket_timeout=10),
        forget_after=3600,
        scan_interval=0.05,
        on_state=lambda *s: states.append(s),
    )
    changes = reader.changes()
    try:
        batches = [await anext(changes) for _ in range(3)]  # three looks at the records
    finally:
        await changes.aclose()
    assert [(b.alive, b.problem) for b in batches] == [(frozenset(), None)] * 3
    assert states == [
        (
            "degraded",
            f"no node has published to {redis_server.url} yet (is [backplane] url the same on the nodes?); "
            "skipped 1 bad entries (see the log)",
        )
    ]
