"""Nodes publish to Redis Streams: a real redis-server (Debian's) and real service processes."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from tests.conftest import receive_until
from tests.helpers import Service, eventually


def node_config(workspace: Any, url: str, node: str = "host-a") -> str:
    return (
        "[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        f"[adw]\nagents_dir = '{workspace.agents}'\ntrees_dir = '{workspace.trees}'\n[event_log]\npath = ''\n"
        f"[backplane]\nurl = '{url}'\nnode = '{node}'\nrefresh_interval = 0.2\nnode_timeout = 2.0\n"
    )


async def stream(client: aioredis.Redis, channel: str, node: str = "host-a") -> list[dict[str, Any]]:
    entries: Any = await client.xrange(f"adwb:ch:{node}:{channel}")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def backplane_status(session: aiohttp.ClientSession, service: Service) -> dict[str, Any]:
    async with session.get(service.url("/api/v1/system-status")) as response:
        services: dict[str, Any] = (await response.json())["services"]
    return services.get("backplane", {})


async def test_a_node_publishes_each_change_and_its_record(redis_server, workspace, write_state) -> None:
    write_state("a1", step=0)
    service = await Service(workspace.root, node_config(workspace, redis_server.url)).start()
    client = aioredis.from_url(redis_server.url)
    try:
        first = await eventually(lambda: stream(client, "adw-state:a1"))
        assert [(e["node"], e["seq"], orjson.loads(e["data"])) for e in first] == [
            ("host-a", "1", {"adw_id": "a1", "step": 0})
        ]
        write_state("a1", step=1)
        both = await eventually(lambda: _longer(stream(client, "adw-state:a1"), 1))
        assert [(e["seq"], e["type"], orjson.loads(e["data"])["step"]) for e in both] == [
            ("1", "adw_state_update", 0),
            ("2", "adw_state_update", 1),
        ]
        record = orjson.loads(await client.get("adwb:node:host-a") or b"null")
        assert (record["name"], record["version"]) == ("host-a", "0.1.0")
        assert 0 < await client.pttl("adwb:node:host-a") <= 2000  # expires unless refreshed
        kept = orjson.loads(await client.hget("adwb:nodes", "host-a") or b"null")  # and is kept after it expires
        assert (kept["name"], kept["address"]) == ("host-a", "127.0.0.1:0")
        monitor = await stream(client, "adw-monitor")
        assert orjson.loads(monitor[-1]["data"])["workflows"][0]["adw_id"] == "a1"
        # Nothing changed, nothing published: an identical rewrite adds no entry.
        write_state("a1", step=1)
        write_state("a2", step=0)
        await eventually(lambda: stream(client, "adw-state:a2"))
        assert len(await stream(client, "adw-state:a1")) == 2
        async with aiohttp.ClientSession() as session:
            status = await backplane_status(session, service)
        assert (status["status"], status["message"]) == (
            "healthy",
            f"publishing to redis://127.0.0.1:{redis_server.port}/0 as host-a",
        )
    finally:
        await client.aclose()
        await service.stop()


async def _longer(entries: Any, than: int) -> Any:
    found = await entries
    return found if len(found) > than else None


async def test_while_redis_is_down_the_node_serves_locally_and_then_publishes_the_current_state(
    redis_server, workspace, write_state
) -> None:
    write_state("a1", step=0)
    service = await Service(workspace.root, node_config(workspace, redis_server.url)).start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(service.url("/ws/adw-state/a1")) as ws:
                await receive_until(ws, lambda m: m.get("seq") == 1)
                redis_server.stop()
                status = await eventually(lambda: _error(backplane_status(session, service)))
                assert status["message"].startswith(f"cannot reach redis://127.0.0.1:{redis_server.port}/0: ")
                write_state("a1", step=1)  # local delivery goes on, Redis or not
                await receive_until(ws, lambda m: m.get("seq") == 2)
                write_state("a1", step=2)
                await receive_until(ws, lambda m: m.get("seq") == 3)
                await redis_server.start()  # back, empty: it lost everything
                client = aioredis.from_url(redis_server.url)
                try:
                    entries = await eventually(lambda: stream(client, "adw-state:a1"), timeout=20)
                    assert [(e["seq"], orjson.loads(e["data"])["step"]) for e in entries] == [("3", 2)]  # the newest
                    assert await eventually(lambda: stream(client, "adw-monitor"))
                finally:
                    await client.aclose()
                status = await eventually(lambda: _healthy(backplane_status(session, service)))
                assert status["status"] == "healthy"
    finally:
        await service.stop()
    assert service.log.count("backplane: cannot reach") == 1  # one line while it stays down


async def _error(status: Any) -> Any:
    found = await status
    return found if found.get("status") == "error" else None


async def _healthy(status: Any) -> Any:
    found = await status
    return found if found.get("status") == "healthy" else None


def test_a_cluster_view_needs_the_url_and_view_takes_two_values(make_config) -> None:
    from broadcaster.errors import ConfigError

    assert make_config(backplane__url="redis://127.0.0.1:6379/0", backplane__view="cluster").backplane.view == "cluster"
    with pytest.raises(ConfigError, match=r"\[backplane\] view.*set \[backplane\] url too"):
        make_config(backplane__view="cluster")
    with pytest.raises(ConfigError, match=r'\[backplane\] view.*must be "" \(a node\) or "cluster"'):
        make_config(backplane__url="redis://127.0.0.1:6379/0", backplane__view="clusters")


async def test_a_key_redis_refuses_costs_its_channel_only(redis_server, workspace, write_state) -> None:
    client = aioredis.from_url(redis_server.url)
    await client.set("adwb:ch:host-a:adw-state:a2", "a string where a stream belongs")
    write_state("a1", step=0)
    write_state("a2", step=0)
    service = await Service(workspace.root, node_config(workspace, redis_server.url)).start()
    try:
        assert await eventually(lambda: stream(client, "adw-state:a1"))
        write_state("a1", step=1)
        assert await eventually(lambda: _longer(stream(client, "adw-state:a1"), 1))  # the others go on
        async with aiohttp.ClientSession() as session:
            status = await backplane_status(session, service)
            async with session.get(service.url("/metrics")) as response:
                metrics = await response.text()
        assert 'adw_broadcaster_backplane_entries_total{outcome="refused"} 1.0' in metrics.splitlines()
        assert 'adw_broadcaster_backplane_entries_total{outcome="dropped"} 0.0' in metrics.splitlines()
        assert (status["status"], status["message"]) == (
            "degraded",
            f"publishing to redis://127.0.0.1:{redis_server.port}/0 as host-a; "
            "Redis refuses writes to 1 key(s), e.g. adwb:ch:host-a:adw-state:a2:"
            " WRONGTYPE Operation against a key holding the wrong kind of value",
        )
    finally:
        await client.aclose()
        await service.stop()
    refused = [line for line in service.log.splitlines() if "Redis refused" in line]
    assert len(refused) == 1, refused
    assert refused[0].endswith(
        "backplane: Redis refused adwb:ch:host-a:adw-state:a2: "
        "WRONGTYPE Operation against a key holding the wrong kind of value; publishing the other channels"
    )
