"""The WebSocket protocol: paths, refused ids, ping/pong, limits, heartbeats, slow clients."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import WSMsgType
from yarl import URL

from broadcaster.web.keys import HUB
from tests.conftest import EPOCH, ISO_TIME, UPGRADE, receive

EMPTY = {
    "workflows": ("workflows_update", []),
    "workflow-history": (
        "workflow_history_update",
        {
            "workflows": [],
            "total_count": 0,
            "analytics": {
                "total_count": 0,
                "success_rate": 0.0,
                "average_duration": 0.0,
                "recent_failures": 0,
                "total_workflows": 0,
                "completed_workflows": 0,
                "failed_workflows": 0,
                "avg_duration_seconds": 0.0,
                "success_rate_percent": 0.0,
                "workflows_by_model": {},
                "workflows_by_template": {},
                "workflows_by_status": {},
                "avg_cost": 0.0,
                "total_cost": 0.0,
                "avg_cost_per_completion": 0.0,
                "cost_trend_7day": 0.0,
                "cost_trend_30day": 0.0,
                "avg_tokens": 0.0,
                "avg_cache_efficiency": 0.0,
            },
        },
    ),
    "adw-monitor": (
        "adw_monitor_update",
        {
            "workflows": [],
            "summary": {"total": 0, "running": 0, "completed": 0, "failed": 0, "paused": 0, "stalled": 0},
            "last_updated": ISO_TIME,
        },
    ),
    "queue": ("queue_update", {"phases": [], "total": 0, "paused": False}),
    "webhook-status": ("webhook_status_update", {"status": "unknown", "message": "not polled yet"}),
}


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_channels_without_data_answer_with_their_empty_shape_under_every_prefix(start, prefix: str) -> None:
    client = await start()  # no database, no webhook service, no ADWs
    for family, (kind, data) in EMPTY.items():
        async with client.ws_connect(f"{prefix}/ws/{family}") as ws:
            assert await receive(ws) == {
                "type": kind,
                "channel": family,
                "seq": 0,
                "epoch": EPOCH,
                "timestamp": ISO_TIME,
                "data": data,
            }, family
    async with client.ws_connect(f"{prefix}/ws/adw-state/77c90e61") as ws:
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:77c90e61",
            "adw_id": "77c90e61",
            "seq": 0,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": {},
        }


async def test_configured_prefixes_replace_the_defaults(start) -> None:
    client = await start(server__path_prefixes=["/rt"])
    async with client.ws_connect("/rt/ws/queue") as ws:
        assert (await receive(ws))["type"] == "queue_update"
    for path in ("/ws/queue", "/api/v1/ws/queue"):
        assert (await client.get(path)).status == 404


@pytest.mark.parametrize(
    "raw",
    ["..", "%2e%2e", "%2E%2E%2Fetc%2Fpasswd", ".", "a%20b", "x" * 65, "a%00b", "%C3%A9", "a%2Fb", "~root", "a%5Cb"],
)
async def test_bad_adw_ids_are_refused(start, workspace, raw: str) -> None:
    client = await start()
    # The raw session, not client.get: the test client would normalise "." and ".." away.
    response = await client.session.get(
        URL(f"http://{client.host}:{client.port}/ws/adw-state/{raw}", encoded=True),
        headers=UPGRADE,
    )
    assert response.status == 400
    assert (await response.json())["detail"].startswith("invalid adw_id ")
    assert client.app[HUB].clients == []


async def test_ping_is_answered_and_other_messages_are_ignored(start) -> None:
    client = await start()
    async with client.ws_connect("/ws/queue") as ws:
        await receive(ws)
        await ws.send_str('{"type": "client_ready"}')
        await ws.send_str("not json at all")
        await ws.send_bytes(b"\x00\x01")
        await ws.send_str('{"type": "ping", "timestamp": 1764064800123}')
        assert await receive(ws) == {"type": "pong", "timestamp": 1764064800123}
        await ws.send_str("ping")
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "pong")


async def test_oversized_frame_closes_that_client_only(start, write_state) -> None:
    client = await start(broadcast__min_interval=0, server__max_message_size=1024)
    async with client.ws_connect("/ws/adw-state/a1") as bad, client.ws_connect("/ws/adw-state/a1") as good:
        await receive(bad)
        await receive(good)
        await bad.send_str("x" * 2000)
        msg = await bad.receive(timeout=5)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1009)
        write_state("a1", step=1)
        assert (await receive(good))["data"] == {"adw_id": "a1", "step": 1}


async def test_a_flood_closes_that_client_only(start, write_state) -> None:
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws/adw-state/a1") as bad, client.ws_connect("/ws/adw-state/a1") as good:
        await receive(bad)
        await receive(good)
        for _ in range(200):
            await bad.send_str('{"type": "client_ready"}')
        msg = await bad.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1008, "too many messages")
        write_state("a1", step=1)
        assert (await receive(good))["data"] == {"adw_id": "a1", "step": 1}


async def test_a_quiet_socket_gets_heartbeats(start) -> None:
    client = await start(server__heartbeat_interval=0.2)
    async with client.ws_connect("/ws/queue") as ws:
        assert (await receive(ws))["type"] == "queue_update"
        assert await receive(ws) == {"type": "heartbeat", "timestamp": ISO_TIME}
        assert await receive(ws) == {"type": "heartbeat", "timestamp": ISO_TIME}


async def wait_until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_receiving(start, write_state) -> None:
    blob = "x" * 400_000
    write_state("big", step=0, blob=blob)
    client = await start(broadcast__min_interval=0, server__write_timeout=0.5)
    hub = client.app[HUB]

    stalled = socket.socket()  # completes the handshake, then never reads a byte
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((client.host, client.port))
    stalled.sendall(
        b"GET /ws/adw-state/big HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        await wait_until(lambda: len(hub.clients) == 1)
        [slow] = hub.clients
        async with client.ws_connect("/ws/adw-state/big", max_msg_size=0) as good:
            assert (await receive(good))["data"]["step"] == 0
            step = 0
            while slow.closed_reason is None and step < 200:  # bounded: a few MB fill the socket buffers
                step += 1
                write_state("big", step=step, blob=blob)
                message = await receive(good)  # the reading client gets every change meanwhile
                assert (message["seq"], message["data"]["step"]) == (step + 1, step)
            assert slow.closed_reason == "slow client: its socket took nothing for 0.5s"
            await wait_until(lambda: hub.clients != [slow] and slow not in hub.clients)
            assert len(hub.clients) == 1
            write_state("big", step=step + 1, blob="small now")
            assert (await receive(good))["data"] == {"adw_id": "big", "step": step + 1, "blob": "small now"}
    finally:
        stalled.close()
