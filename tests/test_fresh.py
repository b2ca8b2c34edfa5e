"""Clock values are true when read: fresh uptimes and durations in answers, refreshes on quiet sockets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web

from broadcaster.channels.specs import CATALOG
from broadcaster.core.client import Client
from broadcaster.core.events import Event
from broadcaster.core.hub import Hub
from tests.conftest import receive, receive_until
from tests.helpers import server_frames


async def test_a_quiet_clock_channel_is_refreshed_once_per_interval_and_no_other_is() -> None:
    now = [0.0]
    hub = Hub(
        catalog=CATALOG,
        tick=lambda: now[0],
        fresh=lambda channel, data: {**data, "as_of": now[0]},
        refresh_interval=60.0,
    )
    pairs = [socket.socketpair() for _ in range(2)]
    loop = asyncio.get_running_loop()
    clients, transports = [], []
    for ours, _ in pairs:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        transports.append(transport)
        clients.append(Client(web.WebSocketResponse(), heartbeat_interval=1e9, write_timeout=10, transport=transport))
    hub.publish(Event("system-status", 7, "system_status_update", {"overall_status": "healthy"}, "d7", 0.0))
    hub.publish(Event("workflows", 3, "workflows_update", [], "w3", 0.0))
    hub.attach(clients[0], "system-status")
    hub.attach(clients[1], "workflows")

    def arrived(n: int) -> list[dict[str, Any]]:
        theirs = pairs[n][1]
        theirs.setblocking(False)
        try:
            return server_frames(theirs.recv(1 << 16))
        except BlockingIOError:
            return []

    assert [(m["seq"], m["data"]) for m in arrived(0)] == [(7, {"overall_status": "healthy", "as_of": 0.0})]
    assert [m["seq"] for m in arrived(1)] == [3]
    now[0] = 59.9
    assert (hub.refresh(), arrived(0)) == (0, [])
    now[0] = 60.0
    assert hub.refresh() == 1
    [refreshed] = arrived(0)
    assert (refreshed["type"], refreshed["seq"], refreshed["data"]) == (
        "system_status_update",
        7,  # a refresh is not a change: same seq
        {"overall_status": "healthy", "as_of": 60.0},
    )
    now[0] = 70.0  # a real change restarts the interval
    hub.publish(Event("system-status", 8, "system_status_update", {"overall_status": "error"}, "d8", 0.0))
    assert [m["seq"] for m in arrived(0)] == [8]
    now[0] = 129.0
    assert (hub.refresh(), arrived(0)) == (0, [])
    now[0] = 130.0
    assert (hub.refresh(), [(m["seq"], m["data"]["as_of"]) for m in arrived(0)]) == (1, [(8, 130.0)])
    assert arrived(1) == []  # workflows carries no clock values: never refreshed
    for transport in transports:
        transport.close()
    for _, theirs in pairs:
        theirs.close()
    await asyncio.sleep(0)  # the transports finish closing


async def test_uptime_and_running_durations_advance_between_two_reads(start, write_state) -> None:
    write_state("a1", issue_number="5", status="running", start_time="2026-01-01T00:00:00")
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws/adw-monitor") as ws:
        await receive_until(ws, lambda m: bool(m["data"]["workflows"]))

    async def read() -> tuple[dict[str, Any], dict[str, Any]]:
        status = await (await client.get("/api/v1/system-status")).json()
        monitor = await (await client.get("/api/v1/adw-monitor")).json()
        return status, monitor

    first_status, first_monitor = await read()
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        status, monitor = await read()
        if (
            status["services"]["backend_api"]["uptime_seconds"]
            > first_status["services"]["backend_api"]["uptime_seconds"]
        ):
            break
        assert asyncio.get_running_loop().time() < deadline, "uptime never moved"
        await asyncio.sleep(0.05)
    assert status["timestamp"] > first_status["timestamp"]
    assert monitor["last_updated"] > first_monitor["last_updated"]
    [before], [after] = first_monitor["workflows"], monitor["workflows"]
    assert after["duration_seconds"] > before["duration_seconds"]  # unfinished: its duration runs on
    assert {**after, "duration_seconds": None} == {**before, "duration_seconds": None}  # nothing else moved


async def test_a_quiet_status_socket_is_refreshed_and_a_quiet_workflows_socket_is_not(start, write_state) -> None:
    write_state("a1", issue_number="5")
    client = await start(broadcast__refresh_interval=0.2, broadcast__min_interval=0)
    async with client.ws_connect("/ws/workflows") as workflows, client.ws_connect("/ws/system-status") as status:
        await receive(workflows)
        seen = [await receive(status)]
        while len(seen) < 3 or not seen[-1]["seq"] == seen[-2]["seq"] == seen[-3]["seq"]:
            seen.append(await receive(status))  # start-up may still change status; then only refreshes come
        refreshes = seen[-3:]
        assert [m["type"] for m in refreshes] == ["system_status_update"] * 3
        assert refreshes[0]["data"]["timestamp"] < refreshes[1]["data"]["timestamp"] < refreshes[2]["data"]["timestamp"]

        def without_clock(data: dict[str, Any]) -> dict[str, Any]:
            services = {n: {**s, "uptime_seconds": 0, "uptime_human": ""} for n, s in data["services"].items()}
            return {**data, "timestamp": "", "services": services}

        assert without_clock(refreshes[2]["data"]) == without_clock(refreshes[0]["data"])  # only the clock moved
        await workflows.send_str("ping")  # whatever workflows got meanwhile would arrive before the pong
        assert (await workflows.receive(timeout=5)).data == "pong"
