"""The cluster view: a real redis-server, three real node processes and a real view process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from tests.conftest import EPOCH, ISO_TIME, receive, receive_until
from tests.helpers import Service, free_port
from tests.servers import RedisServer

NODES = ("host-a", "host-b", "host-c")
NODE_TIMEOUT = 2.0


@dataclass
class Node:
    name: str
    agents: Path
    service: Service

    def write(self, adw_id: str, **fields: Any) -> None:
        """Save an ADW's state file the way agents do (temp file, then rename)."""
        directory = self.agents / adw_id
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / ".adw_state.json.tmp"
        tmp.write_bytes(orjson.dumps({"adw_id": adw_id, **fields}))
        os.replace(tmp, directory / "adw_state.json")


def node_config(root: Path, url: str, name: str) -> str:
    return (
        "[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        f"[adw]\nagents_dir = '{root / 'agents'}'\ntrees_dir = '{root / 'trees'}'\n[event_log]\npath = ''\n"
        f"[backplane]\nurl = '{url}'\nnode = '{name}'\nrefresh_interval = 0.2\nnode_timeout = {NODE_TIMEOUT}\n"
    )


def view_config(root: Path, url: str, port: int) -> str:
    return (
        f"[server]\nport = {port}\nheartbeat_interval = 30\n[broadcast]\nmin_interval = 0\n"
        f"[event_log]\npath = '{root / 'view-events.db'}'\n"
        f"[backplane]\nurl = '{url}'\nview = 'cluster'\nnode_timeout = {NODE_TIMEOUT}\n"
    )


@dataclass
class Cluster:
    redis: RedisServer
    nodes: dict[str, Node]
    view: Service
    root: Path
    port: int


def adw(status: str, n: int, start: str, **more: Any) -> dict[str, Any]:
    return {"issue_number": str(n), "status": status, "start_time": start, "nl_input": f"issue {n}", **more}


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Cluster]:
    nodes: dict[str, Node] = {}
    try:
        for name in NODES:
            root = tmp_path / name
            (root / "agents").mkdir(parents=True)
            (root / "trees").mkdir()
            nodes[name] = Node(name, root / "agents", Service(root, node_config(root, redis_server.url, name)))
        a, b, c = nodes.values()
        a.write("a1", **adw("running", 1, "2026-11-25T10:00:00"))
        b.write("b1", **adw("completed", 2, "2026-11-25T09:00:00", end_time="2026-11-25T09:30:00"))
        b.write("b2", **adw("running", 3, "2026-11-25T08:00:00"))
        c.write("c1", **adw("failed", 4, "2026-11-25T07:00:00", end_time="2026-11-25T07:10:00"))
        await asyncio.gather(*(node.service.start() for node in nodes.values()))
        root = tmp_path / "view"
        root.mkdir()
        port = free_port()
        view = await Service(root, view_config(root, redis_server.url, port)).start()
        found = Cluster(redis_server, nodes, view, root, port)
        yield found
        await found.view.stop()
    finally:
        for node in nodes.values():
            if node.service.proc is not None:
                node.service.kill()


async def monitor_until(ws: Any, check: Any, timeout: float = 15.0) -> dict[str, Any]:
    """Return the first adw-monitor frame whose data passes ``check``."""
    frames = await receive_until(ws, lambda m: m.get("channel") == "adw-monitor" and check(m["data"]), timeout)
    return frames[-1]


def items(monitor: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return [(w["adw_id"], w["node"], w["status"], w.get("node_status")) for w in monitor["workflows"]]


UNION = [
    ("a1", "host-a", "running", None),  # running first, newest first
    ("b2", "host-b", "running", None),
    ("c1", "host-c", "failed", None),
    ("b1", "host-b", "completed", None),
]


async def test_the_view_serves_the_union_and_every_change_on_any_node(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        query = "channels=adw-monitor,workflows,adw-state:b2,system-status"
        async with session.ws_connect(cluster.view.url(f"/ws?{query}")) as ws:
            frame = await monitor_until(ws, lambda d: len(d["workflows"]) == 4)
            assert items(frame["data"]) == UNION
            assert frame["data"]["summary"] == {
                "total": 4,
                "running": 2,
                "completed": 1,
                "failed": 1,
                "paused": 0,
                "stalled": 0,
            }
            cluster.nodes["host-b"].write("b2", **adw("running", 3, "2026-11-25T08:00:00", current_phase="test"))
            state = await receive_until(
                ws, lambda m: m.get("channel") == "adw-state:b2" and "current_phase" in m["data"]
            )
            assert state[-1] == {
                "type": "adw_state_update",
                "channel": "adw-state:b2",
                "adw_id": "b2",
                "seq": 2,
                "timestamp": ISO_TIME,
                "data": {
                    **adw("running", 3, "2026-11-25T08:00:00", current_phase="test"),
                    "adw_id": "b2",
                    "node": "host-b",
                },
            }
            cluster.nodes["host-c"].write("c2", **adw("paused", 5, "2026-11-25T11:00:00"))
            frame = await monitor_until(ws, lambda d: len(d["workflows"]) == 5)
            assert items(frame["data"])[2] == ("c2", "host-c", "paused", None)
            assert frame["data"]["summary"] == {
                "total": 5,
                "running": 2,
                "completed": 1,
                "failed": 1,
                "paused": 1,
                "stalled": 0,
            }
        async with session.get(cluster.view.url("/api/v1/workflows")) as response:
            workflows = await response.json()
        assert sorted((w["adw_id"], w["issue_number"], w["node"]) for w in workflows) == [
            ("a1", 1, "host-a"),
            ("b1", 2, "host-b"),
            ("b2", 3, "host-b"),
            ("c1", 4, "host-c"),
            ("c2", 5, "host-c"),
        ]
        async with session.get(cluster.view.url("/api/v1/system-status")) as response:
            status = await response.json()
        per_node = {f"{n}/{s}" for n in NODES for s in ("backend_api", "adw_files", "backplane")}
        assert set(status["services"]) == {"backend_api", "backplane"} | per_node
        assert status["services"]["backplane"]["message"] == f"reading 3 node(s) from {cluster.redis.url}"
        assert status["overall_status"] == "healthy"
        assert f"; cluster view of the nodes on {cluster.redis.url}; token off" in cluster.view.log
        async with session.get(cluster.view.url("/api/v1/adw-monitor")) as response:
            monitor = await response.json()
        # A second view beside it (as behind a load balancer) reads the same streams and serves the same.
        root = cluster.root.parent / "view-2"
        root.mkdir()
        second = await Service(root, view_config(root, cluster.redis.url, free_port())).start()
        try:
            async with session.get(second.url("/api/v1/adw-monitor")) as response:
                assert items(await response.json()) == items(monitor)
        finally:
            await second.stop()


async def test_a_killed_node_is_marked_unreachable_within_node_timeout(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(cluster.view.url("/ws?channels=adw-monitor,system-status")) as ws:
            await monitor_until(ws, lambda d: len(d["workflows"]) == 4)
            cluster.nodes["host-b"].service.kill()
            killed = time.monotonic()
            # First late (its record stops moving: stale), then gone when the record expires.
            frame = await monitor_until(ws, lambda d: any(w.get("node_status") for w in d["workflows"]))
            late = time.monotonic() - killed
            assert items(frame["data"]) == [
                ("a1", "host-a", "running", None),
                ("b2", "host-b", "running", "stale"),
                ("c1", "host-c", "failed", None),
                ("b1", "host-b", "completed", "stale"),
            ]
            assert late < NODE_TIMEOUT, late
            frame = await monitor_until(
                ws, lambda d: any(w.get("node_status") == "unreachable" for w in d["workflows"])
            )
            took = time.monotonic() - killed
            assert items(frame["data"]) == [
                ("a1", "host-a", "running", None),
                ("b2", "host-b", "running", "unreachable"),  # its last known state stays, marked
                ("c1", "host-c", "failed", None),
                ("b1", "host-b", "completed", "unreachable"),
            ]
            assert took <= NODE_TIMEOUT + 0.5, took  # the record expires within node_timeout; looked at every 0.2 s
            status = await receive_until(
                ws,
                lambda m: (
                    m.get("channel") == "system-status"
                    and m["data"]["services"].get("host-b/node", {}).get("status") == "error"
                ),
            )
            lost = status[-1]["data"]
            assert lost["overall_status"] == "error"
            assert lost["services"]["host-b/node"]["status"] == "error"
            assert lost["services"]["backplane"]["message"].endswith("; not heard from: host-b")


async def test_five_seconds_without_redis_lose_no_final_state(cluster: Cluster) -> None:
    a, b, c = cluster.nodes.values()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(cluster.view.url("/ws?channels=adw-monitor")) as ws:
            await monitor_until(ws, lambda d: len(d["workflows"]) == 4)
            cluster.redis.stop()
            a.write("a1", **adw("completed", 1, "2026-11-25T10:00:00", end_time="2026-11-25T10:20:00"))
            b.write("b3", **adw("running", 6, "2026-11-25T12:00:00"))
            c.write("c1", **adw("failed", 4, "2026-11-25T07:00:00", end_time="2026-11-25T07:10:00", error_count=2))
            await asyncio.sleep(5)  # the outage the test is about, not a wait for anything to settle
            await cluster.redis.start()
            # Meanwhile each node's items stayed, marked unreachable, until its record was back.
            frame = await monitor_until(
                ws,
                lambda d: (
                    len(d["workflows"]) == 5
                    and d["workflows"][0]["adw_id"] == "b3"
                    and not any(w.get("node_status") for w in d["workflows"])
                ),
            )
        wanted = []
        for node in (a, b, c):
            async with session.get(node.service.url("/api/v1/adw-monitor")) as response:
                wanted += [{**w, "node": node.name} for w in (await response.json())["workflows"]]
    assert items(frame["data"]) == [
        ("b3", "host-b", "running", None),
        ("b2", "host-b", "running", None),
        ("c1", "host-c", "failed", None),
        ("a1", "host-a", "completed", None),
        ("b1", "host-b", "completed", None),
    ]
    by_id = {w["adw_id"]: w for w in frame["data"]["workflows"]}
    for item in wanted:  # the view equals the nodes, item by item (a running one's duration is as of its frame)
        assert {**by_id[item["adw_id"]], "duration_seconds": None} == {**item, "duration_seconds": None}


async def test_a_restarted_view_resumes_its_clients_recovered(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(cluster.view.url("/ws?channels=adw-state:a1")) as ws:
            assert (await receive(ws))["type"] == "subscribed"
            first = await receive(ws)
        assert (first["channel"], first["data"]["node"], first["epoch"]) == ("adw-state:a1", "host-a", EPOCH)
        await cluster.view.stop()
        changed = adw("running", 1, "2026-11-25T10:00:00", current_phase="build")
        cluster.nodes["host-a"].write("a1", **changed)  # while the view is down
        client = aioredis.from_url(cluster.redis.url)
        try:
            async with asyncio.timeout(10):
                while b"build" not in str(await client.xrevrange("adwb:ch:host-a:adw-state:a1", count=1)).encode():
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        cluster.view = await Service(cluster.root, view_config(cluster.root, cluster.redis.url, cluster.port)).start()
        since = f"since=adw-state:a1:{first['seq']}&epoch={first['epoch']}"
        async with session.ws_connect(cluster.view.url(f"/ws?channels=adw-state:a1&{since}")) as ws:
            assert (await receive(ws))["type"] == "subscribed"
            assert await receive(ws) == {
                "type": "adw_state_update",
                "channel": "adw-state:a1",
                "adw_id": "a1",
                "seq": first["seq"] + 1,
                "epoch": first["epoch"],
                "recovered": True,
                "timestamp": ISO_TIME,
                "data": {**changed, "adw_id": "a1", "node": "host-a"},
            }


async def test_a_node_republishing_unchanged_data_sends_nothing(cluster: Cluster) -> None:
    client = aioredis.from_url(cluster.redis.url)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(cluster.view.url("/ws?channels=adw-monitor")) as ws:
                before = await monitor_until(ws, lambda d: len(d["workflows"]) == 4)
                # A stream gone from the bus: the node notices at its next refresh and publishes
                # the current state of every channel again, all of it unchanged.
                await client.delete("adwb:ch:host-c:adw-monitor")
                async with asyncio.timeout(15):
                    while await client.xlen("adwb:ch:host-c:adw-monitor") == 0:
                        await asyncio.sleep(0.05)
                cluster.nodes["host-a"].write("a9", **adw("queued", 9, "2026-11-25T13:00:00"))
                after = await monitor_until(ws, lambda d: len(d["workflows"]) == 5)
        assert after["seq"] == before["seq"] + 1  # only the real change: host-c's republish made no event
    finally:
        await client.aclose()


async def test_bad_data_on_the_bus_is_logged_once_and_skipped(cluster: Cluster) -> None:
    client = aioredis.from_url(cluster.redis.url)
    try:
        record = orjson.dumps({"name": "host-y", "last_seen": time.time()})
        await client.hset("adwb:nodes", mapping={"bad name!": record, "host-z": b"{not json", "host-y": record})
        await client.set("adwb:node:host-y", record, px=60_000)
        await client.set("adwb:ch:host-y:queue", "a string, not a stream")
        await client.xadd("adwb:ch:host-y:workflows", {"node": "host-y", "type": "workflows_update", "data": b"[1,"})
        await client.xadd("adwb:ch:host-y:webhook-status", {"node": "host-y", "seq": 1})
        monitor = {"workflows": [{"adw_id": "../etc", "status": "running"}], "summary": {}, "last_updated": ""}
        await client.xadd("adwb:ch:host-y:adw-monitor", {"type": "adw_monitor_update", "data": orjson.dumps(monitor)})
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(cluster.view.url("/ws?channels=adw-monitor,system-status")) as ws:
                status = await receive_until(
                    ws, lambda m: "skipped 6 bad" in str(m.get("data", {}).get("services", {}).get("backplane"))
                )
                assert status[-1]["data"]["services"]["backplane"]["message"] == (
                    f"reading 4 node(s) from {cluster.redis.url}; skipped 6 bad entries (see the log)"
                )
                await client.set("adwb:ch:host-y:system-status", "a string, not a stream")
                await client.xadd("adwb:changes:host-y", {"session": "s", "n": 0, "channels": "system-status"})
                await receive_until(ws, lambda m: "skipped 7 bad" in str(m.get("data", {}).get("services")))
                await client.delete("adwb:changes:host-y")  # the index the view follows, replaced
                await client.set("adwb:changes:host-y", "a string now")
                await receive_until(ws, lambda m: "skipped 8 bad" in str(m.get("data", {}).get("services")))
                cluster.nodes["host-a"].write("a2", **adw("running", 7, "2026-11-25T14:00:00"))
                frame = await monitor_until(ws, lambda d: any(w["adw_id"] == "a2" for w in d["workflows"]))
            async with session.get(cluster.view.url("/metrics")) as response:
                metrics = (await response.text()).splitlines()
            assert 'adw_broadcaster_backplane_entries_total{outcome="bad"} 8.0' in metrics
        assert [w["adw_id"] for w in frame["data"]["workflows"]] == ["a2", "a1", "b2", "c1", "b1"]  # ../etc skipped
    finally:
        await client.aclose()
    await cluster.view.stop()
    skipped = [line.split("bus: ", 1)[1] for line in cluster.view.log.splitlines() if "bad data" in line]
    # One line each, however many reads saw them; JSON errors end in the parser's own words.
    assert sorted(line.split(" (", 1)[0] if "not JSON" in line else line for line in skipped) == sorted(
        [
            "adwb:ch:host-y:adw-monitor: item 0 skipped "
            "(invalid adw_id '../etc': use 1-64 letters, digits, '_', '.', '-')",
            "adwb:ch:host-y:queue: WRONGTYPE Operation against a key holding the wrong kind of value",
            "adwb:ch:host-y:system-status: WRONGTYPE Operation against a key holding the wrong kind of value",
            "adwb:changes:host-y: WRONGTYPE Operation against a key holding the wrong kind of value",
            "adwb:ch:host-y:webhook-status: entry type None is not webhook_status_update",
            "adwb:ch:host-y:workflows: data is not JSON",
            "node host-z: record is not JSON",
            "node name 'bad name!' is not 1-64 letters, digits, '_', '.', '-'",
        ]
    )
