"""The bus stays honest (issue 21): a real redis-server, real node processes and a real view process.

Two runs under one name are an error on both and in the view; a FLUSHALL costs the view no
items and the node republishes within node_timeout; a Redis at maxmemory marks the node's items
stale and its entry degraded, and nothing is lost once it takes writes again; a record from the
future is forgotten on time; entries over max_entry_bytes are neither published nor accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from broadcaster.cluster.follower import Batch, BusFollower
from broadcaster.cluster.redis_backplane import RedisBackplane
from tests.conftest import receive_until
from tests.helpers import Service, save_state
from tests.servers import RedisServer

NODE_TIMEOUT = 2.0


def node_config(root: Path, url: str, name: str, extra: str = "") -> str:
    return (
        "[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        f"[adw]\nagents_dir = '{root / 'agents'}'\ntrees_dir = '{root / 'trees'}'\n[event_log]\npath = ''\n"
        f"[backplane]\nurl = '{url}'\nnode = '{name}'\nrefresh_interval = 0.2\nnode_timeout = {NODE_TIMEOUT}\n{extra}"
    )


def view_config(root: Path, url: str, extra: str = "") -> str:
    return (
        "[server]\nheartbeat_interval = 30\n[broadcast]\nmin_interval = 0\n"
        f"[event_log]\npath = '{root / 'view-events.db'}'\n"
        f"[backplane]\nurl = '{url}'\nview = 'cluster'\nnode_timeout = {NODE_TIMEOUT}\n{extra}"
    )


class Started:
    """Services started in a test, stopped (or killed) at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.services: list[Service] = []

    async def node(self, name: str, url: str, *, folder: str | None = None, extra: str = "", **adws: Any) -> Service:
        root = self.tmp_path / (folder or name)
        (root / "trees").mkdir(parents=True)
        for adw_id, fields in adws.items():
            save_state(root / "agents", adw_id, **fields)
        (root / "agents").mkdir(exist_ok=True)
        return await self._start(root, node_config(root, url, name, extra))

    async def view(self, url: str, extra: str = "") -> Service:
        root = self.tmp_path / "view"
        root.mkdir()
        return await self._start(root, view_config(root, url, extra))

    async def _start(self, root: Path, config: str) -> Service:
        service = Service(root, config)
        self.services.append(service)
        return await service.start()


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Started]:
    found = Started(tmp_path)
    try:
        yield found
    finally:
        for service in found.services:
            service.kill()


async def status(session: aiohttp.ClientSession, service: Service) -> dict[str, Any]:
    async with session.get(service.url("/api/v1/system-status")) as response:
        services: dict[str, Any] = (await response.json())["services"]
    return services


async def status_until(
    session: aiohttp.ClientSession, service: Service, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """Poll ``service``'s system status until ``check(services)`` holds; return the services."""
    async with asyncio.timeout(timeout):
        while not check(found := await status(session, service)):
            await asyncio.sleep(0.05)
    return found


def rows(frame: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(w["adw_id"], w["node"], w.get("node_status")) for w in frame["data"]["workflows"]]


async def test_two_runs_under_one_name_are_an_error_on_both_and_in_the_view(started, redis_server) -> None:
    first = await started.node("host-a", redis_server.url, folder="one", a1={"status": "running"})
    second = await started.node("host-a", redis_server.url, folder="two", z1={"status": "completed"})
    view = await started.view(redis_server.url)
    same = "publishes under the same name: give each node its own [backplane] node"
    async with aiohttp.ClientSession() as session:
        for node in (first, second):
            entry = (await status_until(session, node, lambda s: s["backplane"]["status"] == "error"))["backplane"]
            assert (
                entry["message"].startswith("another run of node 'host-a' (at 127.0.0.1:0) ")
                and same in entry["message"]
            )
        seen = await status_until(session, view, lambda s: s.get("host-a/node", {}).get("status") == "error")
        assert seen["host-a/node"]["message"] in (
            "two runs publish as host-a, each overwriting the other: give each node its own name",
            f"another run of node 'host-a' (at 127.0.0.1:0) {same}; its items are its last published state",
        )
        assert seen["backplane"]["status"] == "error"
        async with session.get(view.url("/api/v1/adw-monitor")) as response:
            items = (await response.json())["workflows"]
        assert {item.get("node_status") for item in items} == {"stale"}  # never shown as good data
    await first.stop()
    await second.stop()
    assert "two runs publish as node host-a" in view.log or f"{same}; its items are its last" in view.log


async def test_after_flushall_the_view_keeps_the_items_and_the_node_republishes(started, redis_server) -> None:
    node = await started.node("host-a", redis_server.url, a1={"status": "running"}, a2={"status": "failed"})
    view = await started.view(redis_server.url)
    client = aioredis.from_url(redis_server.url)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(view.url("/ws?channels=adw-monitor")) as ws:
                frames = await receive_until(ws, lambda m: len(m.get("data", {}).get("workflows", ())) == 2)
                await client.flushall()
                flushed = time.monotonic()
                async with asyncio.timeout(NODE_TIMEOUT):  # the node notices within a refresh or two
                    while not await client.exists("adwb:ch:host-a:adw-monitor", "adwb:ch:host-a:adw-state:a1") == 2:
                        await asyncio.sleep(0.02)
                assert time.monotonic() - flushed < NODE_TIMEOUT
                save_state(node.root / "agents", "a3", status="running")  # and the feed goes on
                frames = await receive_until(
                    ws,
                    lambda m: (
                        len(m.get("data", {}).get("workflows", ())) == 3
                        and not any(w.get("node_status") for w in m["data"]["workflows"])
                    ),
                )
        # Never an empty list meanwhile: at most the node's last items, marked.
        assert all(len(frame["data"]["workflows"]) >= 2 for frame in frames if frame.get("channel") == "adw-monitor")
    finally:
        await client.aclose()
    assert "streams of host-a are gone from the bus; publishing every channel again" in node.log


async def test_a_redis_that_refuses_writes_marks_the_node_stale_and_loses_nothing(started, redis_server) -> None:
    node = await started.node("host-a", redis_server.url, a1={"status": "running", "step": 0})
    view = await started.view(redis_server.url)
    client = aioredis.from_url(redis_server.url)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(view.url("/ws?channels=adw-monitor,adw-state:a1")) as ws:
                await receive_until(ws, lambda m: m.get("channel") == "adw-state:a1" and m["data"].get("step") == 0)
                await client.config_set("maxmemory", 1)  # every write is refused: OOM
                save_state(node.root / "agents", "a1", status="running", step=1)
                frame = (
                    await receive_until(
                        ws, lambda m: m.get("channel") == "adw-monitor" and rows(m)[0][2] is not None, timeout=5
                    )
                )[-1]
                assert rows(frame) == [("a1", "host-a", "stale")]  # alive but not publishing: stale, not good
                seen = await status(session, view)
                assert seen["host-a/node"]["status"] in ("degraded", "error")  # late, then gone at node_timeout
                own = (await status(session, node))["backplane"]
                assert own["status"] == "error" and "used memory > 'maxmemory'" in own["message"], own
                await client.config_set("maxmemory", 0)
                await receive_until(ws, lambda m: m.get("channel") == "adw-state:a1" and m["data"].get("step") == 1)
                await receive_until(ws, lambda m: m.get("channel") == "adw-monitor" and rows(m)[0][2] is None)
            healthy = await status_until(session, view, lambda s: "host-a/node" not in s)
            assert healthy["backplane"]["status"] == "healthy"
    finally:
        await client.aclose()


async def test_a_record_from_the_future_is_forgotten_on_time(redis_server: RedisServer) -> None:
    now = [time.time()]
    reader = BusFollower(
        RedisBackplane(redis_server.url, socket_timeout=10),
        forget_after=60,
        scan_interval=0.1,
        on_state=lambda *s: None,
        clock=lambda: now[0],
    )
    client = aioredis.from_url(redis_server.url)
    try:  # a node whose clock ran ten years ahead, and that has not refreshed its record since
        record = {"name": "ahead", "last_seen": now[0] + 10 * 365 * 86400, "instance": "r1"}
        await client.hset("adwb:nodes", "ahead", orjson.dumps(record))
    finally:
        await client.aclose()
    assert (await first(reader)).gone == frozenset({"ahead"})  # heard now: its last items stay, marked
    now[0] += 59
    assert (await first(reader)).gone == frozenset({"ahead"})
    now[0] += 2
    later = await first(reader)
    assert (later.alive, later.gone) == (frozenset(), frozenset())  # forgotten after forget_after, view's clock
    now[0] += 3600
    assert (await first(reader)).gone == frozenset()  # and stays forgotten


async def first(reader: BusFollower) -> Batch:
    changes = reader.changes()
    try:
        return await anext(changes)
    finally:
        await changes.aclose()


async def test_entries_over_max_entry_bytes_are_neither_published_nor_accepted(started, redis_server) -> None:
    big = {"status": "running", "notes": "n" * 200_000}
    node = await started.node(
        "host-a", redis_server.url, extra="max_entry_bytes = 100000\n", a1={"status": "running"}, big=big
    )
    other = await started.node("host-b", redis_server.url, b1={"status": "running"}, huge=big)  # default limit
    view = await started.view(redis_server.url, "max_entry_bytes = 100000\n")
    client = aioredis.from_url(redis_server.url)
    try:
        async with aiohttp.ClientSession() as session:
            own = await status_until(session, node, lambda s: s["backplane"]["status"] == "degraded")
            assert own["backplane"]["message"].endswith(
                "; 1 channel(s) over [backplane] max_entry_bytes, not published: adw-state:big"
            )
            assert await client.exists("adwb:ch:host-a:adw-state:big") == 0
            assert await client.xlen("adwb:ch:host-a:adw-state:a1") == 1  # the rest flows
            assert await client.xlen("adwb:ch:host-b:adw-state:huge") == 1
            seen = await status_until(session, view, lambda s: "skipped 1 bad entries" in s["backplane"]["message"])
            assert seen["backplane"]["status"] == "degraded"
            async with session.get(view.url("/api/v1/adw-state/huge")) as response:
                assert await response.json() == {}  # refused by the view: not parsed, not served
            async with session.get(view.url("/api/v1/adw-monitor")) as response:
                assert sorted(w["adw_id"] for w in (await response.json())["workflows"]) == ["a1", "b1", "big", "huge"]
    finally:
        await client.aclose()
    await other.stop()
    assert "adwb:ch:host-b:adw-state:huge: entry of 200,0" in view.log
