"""webhook-status, routes and system-status against real small HTTP services on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
from aiohttp import web

from broadcaster.web.keys import CONFIG
from tests.conftest import EPOCH, ISO_TIME, receive, receive_until
from tests.helpers import WEBHOOK, eventually, json_app


def orjson_error(raw: bytes) -> str:
    """Return orjson's own words for ``raw`` (they differ between its releases)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    raise AssertionError(f"{raw!r} parses")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_status_down_then_up_then_down(start, aiohttp_server) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook-status"
    client = await start(webhook__status_url=url, webhook__poll_interval=0.05)
    async with client.ws_connect("/ws/webhook-status") as ws:
        down = await receive_until(ws, lambda m: m["data"]["status"] == "error")
        assert {k: v for k, v in down[-1].items() if k != "epoch"} == {
            "type": "webhook_status_update",
            "channel": "webhook-status",
            "seq": 1,
            "timestamp": ISO_TIME,
            "data": {"status": "error", "message": f"{url}: Connection refused"},
        }
        assert down[0]["epoch"] == EPOCH  # a connection's first message carries the epoch, no other does
        assert all("epoch" not in m for m in down[1:])
        served = dict(WEBHOOK)
        server = await aiohttp_server(json_app({"/webhook-status": served}), port=port)
        assert await receive(ws) == {
            "type": "webhook_status_update",
            "channel": "webhook-status",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": WEBHOOK,
        }
        served["uptime"] = 99.0  # the uptime is volatile: no message for it
        served["stats"] = {**WEBHOOK["stats"], "total_received": 4, "successful": 4}
        message = await receive(ws)
        assert (message["seq"], message["data"]["stats"]["total_received"], message["data"]["uptime"]) == (3, 4, 99.0)
        await server.close()
        assert await receive(ws) == {
            "type": "webhook_status_update",
            "channel": "webhook-status",
            "seq": 4,
            "timestamp": ISO_TIME,
            "data": {"status": "error", "message": f"{url}: Connection refused"},
        }


async def test_webhook_answers_that_are_not_a_status_object(start, aiohttp_server) -> None:
    routes: dict[str, Any] = {"/webhook-status": 503}
    server = await aiohttp_server(json_app(routes))
    url = str(server.make_url("/webhook-status"))
    client = await start(webhook__status_url=url, webhook__poll_interval=0.05)
    async with client.ws_connect("/ws/webhook-status") as ws:
        first = await receive_until(ws, lambda m: m["data"]["status"] == "error")
        assert first[-1]["data"] == {"status": "error", "message": "HTTP 503"}
        routes["/webhook-status"] = [1, 2]
        assert (await receive(ws))["data"] == {
            "status": "error",
            "message": "the webhook service answered a JSON list, not an object",
        }


OPENAPI = {
    "openapi": "3.1.0",
    "paths": {
        "/api/v1/items": {
            "get": {"operationId": "list_items", "summary": "List items", "tags": ["items"]},
            "post": {"summary": "Create item", "description": "Adds one", "tags": ["items"]},
            "head": {"summary": "left out"},
            "parameters": [],
        },
        "/health": {"get": {}},
    },
}


def route(path: str, method: str, name: str, summary: str = "", description: str = "", tags=()) -> dict:
    return {
        "path": path,
        "method": method,
        "name": name,
        "handler": name,
        "summary": summary,
        "description": description,
        "tags": list(tags),
    }


async def test_routes_are_our_own_plus_the_openapi_documents(start, aiohttp_server) -> None:
    document = orjson.loads(orjson.dumps(OPENAPI))
    server = await aiohttp_server(json_app({"/openapi.json": document}))
    client = await start(routes__openapi_url=str(server.make_url("/openapi.json")), routes__poll_interval=0.05)
    async with client.ws_connect("/ws/routes") as ws:
        messages = await receive_until(ws, lambda m: any(r["path"] == "/health" for r in m["data"]))
        routes = messages[-1]["data"]
        assert route("/api/v1/items", "GET", "list_items", "List items", tags=["items"]) in routes
        assert route("/api/v1/items", "POST", "Create item", "Create item", "Adds one", ["items"]) in routes
        assert route("/health", "GET", "GET /health") in routes
        assert (
            route(
                "/ws/queue",
                "GET",
                "queue_ws",
                "WebSocket: queue_update messages",
                "Current state on connect, then every change (at most one per min_interval)",
                ["websocket"],
            )
            in routes
        )
        assert {(r["path"], r["method"]) for r in routes} >= {
            ("/api/v1/ws/adw-state/{adw_id}", "GET"),
            ("/api/queue/config", "GET"),
        }
        assert not any(r["method"] in ("HEAD", "OPTIONS") for r in routes)
        assert routes == sorted(routes, key=lambda r: (r["path"], r["method"]))
        own = len(routes) - 3
        document["paths"]["/api/v1/orders"] = {"delete": {"operationId": "drop_orders"}}
        changed = await receive(ws)
        assert (len(changed["data"]), changed["seq"]) == (own + 4, messages[-1]["seq"] + 1)
        assert route("/api/v1/orders", "DELETE", "drop_orders") in changed["data"]


async def test_the_first_status_lists_every_configured_entry_checking_and_is_never_healthy_with_none(
    start, aiohttp_server
) -> None:
    answer = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await answer.wait()  # the checks have not answered yet
        return web.json_response({"status": "healthy"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hold)
    server = await aiohttp_server(app)
    client = await start(
        webhook__status_url=str(server.make_url("/webhook-status")),
        upstream__url=str(server.make_url("")),
        system_status__checks=[{"name": "frontend", "url": str(server.make_url("/health"))}],
        event_log__path="",
    )

    async def adw_files_read() -> Any:  # the local source reports at once; the held checks never do
        async with client.get("/api/v1/system-status") as response:
            data = await response.json()
        return data if data["services"]["adw_files"]["status"] != "unknown" else None

    data = await eventually(adw_files_read)
    assert {name: (s["status"], s["message"]) for name, s in data["services"].items()} == {
        "backend_api": ("healthy", "serving on 127.0.0.1:8002"),
        "adw_files": (
            "healthy",
            "watching " + str(client.app[CONFIG].adw.agents_dir) + "; process scan off: status follows the state files",
        ),
        "webhook": ("unknown", "checking"),
        "openapi": ("unknown", "checking"),
        "upstream": ("unknown", "checking"),
        "frontend": ("unknown", "checking"),
    }
    assert (data["overall_status"], data["summary"]) == (
        "unknown",
        {"healthy_services": 2, "total_services": 6, "health_percentage": 33.3},
    )
    answer.set()
    async with client.ws_connect("/ws/system-status") as ws:
        done = await receive_until(ws, lambda m: m["data"]["services"]["frontend"]["status"] != "unknown")
    assert done[-1]["data"]["services"]["frontend"]["status"] == "healthy"


async def test_system_status_has_an_entry_per_source_and_check(start, aiohttp_server, write_state, workspace) -> None:
    write_state("a1", raw=b"{torn")
    routes: dict[str, Any] = {"/health": {"ok": True}, "/down": 500}
    server = await aiohttp_server(json_app(routes))
    client = await start(
        webhook__status_url=str(server.make_url("/down")),
        webhook__poll_interval=0.05,
        system_status__poll_interval=0.05,
        system_status__checks=[{"name": "frontend", "url": str(server.make_url("/health"))}],
    )
    async with client.ws_connect("/ws/system-status") as ws:
        answered = {"webhook", "frontend"}
        messages = await receive_until(
            ws, lambda m: all(m["data"]["services"].get(n, {}).get("status", "unknown") != "unknown" for n in answered)
        )
        data = messages[-1]["data"]
        services = {
            name: {k: v for k, v in s.items() if k not in ("uptime_seconds", "uptime_human")}
            for name, s in data["services"].items()
        }
        assert services == {
            "backend_api": {
                "name": "backend_api",
                "status": "healthy",
                "message": "serving on 127.0.0.1:8002",
                "details": {"version": "0.1.0"},
            },
            "adw_files": {
                "name": "adw_files",
                "status": "degraded",
                "message": "1 unreadable or skipped state file(s), last good state kept: "
                f"{workspace.agents / 'a1' / 'adw_state.json'}: invalid JSON (5 bytes): {orjson_error(b'{torn')}",
                "details": {"agents_dir": str(workspace.agents), "errors_total": 1, "process_scan": "off"},
            },
            "webhook": {
                "name": "webhook",
                "status": "error",
                "message": "HTTP 500",
                "details": {"url": str(server.make_url("/down"))},
            },
            "frontend": {
                "name": "frontend",
                "status": "healthy",
                "message": "HTTP 200",
                "details": {"url": str(server.make_url("/health"))},
            },
        }
        assert (data["overall_status"], data["summary"]) == (
            "error",
            {"healthy_services": 2, "total_services": 4, "health_percentage": 50.0},
        )
        assert data["timestamp"] == ISO_TIME
        assert data["services"]["frontend"]["uptime_human"].endswith("s")
        assert data["services"]["webhook"]["uptime_seconds"] == 0.0
        routes["/down"] = WEBHOOK
        write_state("a1", step=1)
        fixed = await receive_until(ws, lambda m: m["data"]["overall_status"] == "healthy")
        assert fixed[-1]["data"]["summary"] == {"healthy_services": 4, "total_services": 4, "health_percentage": 100.0}
