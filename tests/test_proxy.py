"""The upstream: what this service does not serve is forwarded to [upstream] url and streamed back."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from broadcaster.web.keys import CONFIG
from tests.conftest import receive, receive_settled, receive_until

BIG = bytes(range(256)) * 20_000  # 5 MB
BACKEND_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "tac-webbuilder backend"},
    "paths": {
        "/api/v1/planned-features": {"get": {"operationId": "list_features", "summary": "Planned features"}},
        "/api/v1/queue/pause": {"post": {"operationId": "pause_queue", "tags": ["queue"]}},
    },
}


def upstream_app(seen: list[dict[str, Any]]) -> web.Application:
    """A backend that records each request it got and answers a few paths."""

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if "X-Forwarded-For" in request.headers:  # a forwarded request, not system status looking in
            seen.append(
                {
                    "method": request.method,
                    "path": request.path_qs,
                    "body": body,
                    "forwarded": {k: request.headers.get(k) for k in ("X-Forwarded-For", "X-Forwarded-Proto")},
                    "host": request.headers.get("X-Forwarded-Host"),
                }
            )
        if request.path == "/api/v1/request":
            return web.json_response({"created": True}, status=201, headers={"X-Request-Id": "r-1"})
        if request.path == "/api/v1/big":
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            for at in range(0, len(BIG), 100_000):
                await response.write(BIG[at : at + 100_000])
            return response
        if request.path == "/api/v1/queue":
            return web.json_response({"from": "upstream"})
        if request.path == "/api/v1/old":
            raise web.HTTPFound("/api/v1/new")
        if request.path == "/api/v1/plans":  # FastAPI's slash redirect, absolute to itself
            here = f"{request.url.origin()}/api/v1/plans/?{request.query_string}"
            headers = {
                "Location": here,
                "Content-Location": f"{request.url.origin()}/api/v1/plans/all",
                "Refresh": f'3; url="{request.url.origin()}/api/v1/later"',
                "Link": f"<{request.url.origin()}/api/v1/x>; rel=next",  # not a header that moves a browser
            }
            return web.Response(status=307, headers=headers)
        if request.path == "/openapi.json":
            return web.json_response(BACKEND_DOCUMENT)
        if request.path in ("/docs", "/redoc"):
            return web.Response(text=f"<title>backend {request.path}</title>", content_type="text/html")
        if request.path == "/api/v1/elsewhere":
            raise web.HTTPFound("https://github.com/acme/shop/pull/7")
        if request.path == "/api/v1/cut":
            response = web.StreamResponse(headers={"Content-Length": str(len(BIG))})
            await response.prepare(request)
            await response.write(BIG[:100_000])
            assert request.transport is not None
            request.transport.abort()  # the backend dies mid-answer
            return response
        if request.path == "/api/v1/slow":
            await asyncio.sleep(30)
        if request.path == "/api/v1/preflight-checks":
            return web.json_response({"ok": True, "query": dict(request.query)})
        return web.json_response({"detail": "Not Found"}, status=404)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if message.data == "bye":
                    await ws.close(code=4001, message=b"upstream says bye")
                    break
                await ws.send_str(f"echo {message.data}")
        return ws

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/ws/agent-logs", echo)
    app.router.add_route("*", "/{tail:.*}", record)
    return app


async def test_requests_the_service_does_not_serve_go_to_the_upstream_and_back(start, aiohttp_server) -> None:
    seen: list[dict[str, Any]] = []
    upstream = await aiohttp_server(upstream_app(seen))
    client = await start(upstream__url=str(upstream.make_url("")))

    got = await client.get("/api/v1/preflight-checks?skip_tests=true&x=%20y")
    assert (got.status, await got.json()) == (200, {"ok": True, "query": {"skip_tests": "true", "x": " y"}})
    posted = await client.post("/api/v1/request", json={"nl_input": "add a button"})
    assert (posted.status, await posted.json(), posted.headers["X-Request-Id"]) == (201, {"created": True}, "r-1")
    missing = await client.get("/api/v1/planned-features")
    assert (missing.status, await missing.json()) == (404, {"detail": "Not Found"})  # the upstream's own answer
    moved = await client.get("/api/v1/old", allow_redirects=False)
    assert (moved.status, moved.headers["Location"]) == (302, "/api/v1/new")  # passed on, not followed
    assert [(s["method"], s["path"], s["body"]) for s in seen] == [
        ("GET", "/api/v1/preflight-checks?skip_tests=true&x=%20y", b""),
        ("POST", "/api/v1/request", b'{"nl_input": "add a button"}'),
        ("GET", "/api/v1/planned-features", b""),
        ("GET", "/api/v1/old", b""),
    ]
    assert seen[0]["forwarded"] == {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}
    assert seen[0]["host"] == f"{client.host}:{client.port}"


async def test_redirects_to_the_upstreams_origin_come_back_to_the_clients(start, aiohttp_server) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    client = await start(upstream__url=str(upstream.make_url("")))
    here = f"http://{client.host}:{client.port}"
    moved = await client.get("/api/v1/plans?limit=200", allow_redirects=False)
    assert (moved.status, moved.headers["Location"]) == (307, f"{here}/api/v1/plans/?limit=200")
    assert moved.headers["Content-Location"] == f"{here}/api/v1/plans/all"
    assert moved.headers["Refresh"] == f'3; url="{here}/api/v1/later"'
    assert moved.headers["Link"] == f"<{upstream.make_url('/api/v1/x')}>; rel=next"
    away = await client.get("/api/v1/elsewhere", allow_redirects=False)
    assert away.headers["Location"] == "https://github.com/acme/shop/pull/7"  # another site: as it came
    followed = await client.get("/api/v1/plans?limit=200")  # a client that follows stays here
    assert (followed.status, str(followed.url)) == (404, f"{here}/api/v1/plans/?limit=200")


async def test_the_upstreams_own_docs_answer_and_ours_keep_a_path_of_their_own(start, aiohttp_server) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    client = await start(upstream__url=str(upstream.make_url("")))
    theirs = await (await client.get("/openapi.json")).json()
    assert theirs["info"]["title"] == "tac-webbuilder backend"
    for path in ("/docs", "/redoc"):
        assert await (await client.get(path)).text() == f"<title>backend {path}</title>"
    ours = await (await client.get("/broadcaster/openapi.json")).json()
    assert ours["info"]["title"] == "adw-broadcaster"
    assert "/openapi.json" not in ours["paths"] and "/broadcaster/openapi.json" in ours["paths"]
    asyncapi = await (await client.get("/asyncapi.json")).json()
    assert asyncapi["info"]["externalDocs"]["url"] == "/broadcaster/openapi.json"
    alone = await start(event_log__path="")  # no upstream: /openapi.json is ours as well
    ours_alone = await (await alone.get("/broadcaster/openapi.json")).json()
    assert await (await alone.get("/openapi.json")).json() == ours_alone


async def test_with_an_upstream_the_routes_channel_lists_the_upstreams_routes(start, aiohttp_server) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    client = await start(upstream__url=str(upstream.make_url("")))
    assert client.app[CONFIG].routes.openapi_url == str(upstream.make_url("/openapi.json"))
    async with client.ws_connect("/ws/routes") as ws:
        routes = (await receive_until(ws, lambda m: bool(m["data"])))[-1]["data"]  # once the first poll answered
    assert [(r["method"], r["path"], r["name"], r["tags"]) for r in routes] == [
        ("GET", "/api/v1/planned-features", "list_features", []),
        ("POST", "/api/v1/queue/pause", "pause_queue", ["queue"]),
    ]  # none of this service's own paths: the dashboard's backend is the upstream
    async with client.ws_connect("/ws/system-status") as ws:
        entry = (await receive_settled(ws))["data"]["services"]["openapi"]
    assert (entry["status"], entry["message"]) == ("healthy", f"2 routes from {upstream.make_url('/openapi.json')}")


async def test_browser_pages_get_the_upstreams_own_cors_answers_on_its_paths(start, aiohttp_server) -> None:
    seen: list[dict[str, Any]] = []
    upstream = await aiohttp_server(upstream_app(seen))
    client = await start(upstream__url=str(upstream.make_url("")))
    page = {"Origin": "http://localhost:5173"}
    preflight = await client.options("/api/v1/request", headers={**page, "Access-Control-Request-Method": "POST"})
    assert (preflight.status, seen[-1]["method"]) == (201, "OPTIONS")  # the backend answered it, not this service
    own = await client.options("/api/v1/queue", headers={**page, "Access-Control-Request-Method": "GET"})
    assert (own.status, own.headers["Access-Control-Allow-Origin"]) == (204, "http://localhost:5173")


async def test_big_bodies_are_streamed_through_whole_both_ways(start, aiohttp_server) -> None:
    seen: list[dict[str, Any]] = []
    upstream = await aiohttp_server(upstream_app(seen))
    client = await start(upstream__url=str(upstream.make_url("")))
    answer = await client.get("/api/v1/big")
    assert answer.status == 200
    assert await answer.read() == BIG
    sent = await client.put("/api/v1/upload", data=io.BytesIO(BIG))
    assert sent.status == 404
    assert seen[-1]["method"] == "PUT" and seen[-1]["body"] == BIG


async def test_the_services_own_paths_are_never_forwarded(start, aiohttp_server) -> None:
    seen: list[dict[str, Any]] = []
    upstream = await aiohttp_server(upstream_app(seen))
    client = await start(upstream__url=str(upstream.make_url("")))
    own = await (await client.get("/api/v1/queue")).json()
    assert own == {"phases": [], "total": 0, "paused": False}
    async with client.ws_connect("/api/v1/ws/queue") as ws:
        assert (await receive(ws))["type"] == "queue_update"
    assert seen == []


async def test_a_websocket_is_relayed_both_ways_with_its_close_code(start, aiohttp_server) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    client = await start(upstream__url=str(upstream.make_url("")))
    async with client.ws_connect("/ws/agent-logs") as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "echo hello"
        await ws.send_str("bye")
        closing = await ws.receive(timeout=5)
        assert closing.type is WSMsgType.CLOSE
        assert ws.close_code == 4001


async def test_an_unreachable_upstream_gets_502_json_and_the_channels_go_on(start) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]  # nothing listens here once the socket is closed
    down = await start(upstream__url=f"http://127.0.0.1:{free}")
    answer = await down.get("/api/v1/preflight-checks")
    assert answer.status == 502
    assert (await answer.json())["detail"].startswith(f"upstream http://127.0.0.1:{free} cannot be reached: ")
    assert (await (await down.get("/api/v1/queue")).json())["total"] == 0  # its own channels still served


async def test_a_hanging_upstream_gets_504_json_within_the_timeout(start, aiohttp_server) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    slow = await start(upstream__url=str(upstream.make_url("")), upstream__timeout=0.3)
    answer = await slow.get("/api/v1/slow")
    assert (answer.status, await answer.json()) == (
        504,
        {"detail": f"upstream {str(upstream.make_url('')).rstrip('/')} did not answer within 0.3s"},
    )


async def test_system_status_says_whether_the_upstream_answers(start, aiohttp_server) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    url = str(upstream.make_url(""))
    client = await start(upstream__url=url, upstream__poll_interval=0.05)
    async with client.ws_connect("/ws/system-status") as ws:
        messages = await receive_until(ws, lambda m: m["data"]["services"]["upstream"]["status"] != "unknown")
        entry = messages[-1]["data"]["services"]["upstream"]
        assert {k: entry[k] for k in ("name", "status", "message", "details")} == {
            "name": "upstream",
            "status": "healthy",
            "message": f"{url} answers (HTTP 404)",  # any answer: it is there
            "details": {"url": url},
        }
        await upstream.close()
        down = await receive_until(ws, lambda m: m["data"]["services"]["upstream"]["status"] == "error")
        assert down[-1]["data"]["services"]["upstream"]["message"].startswith(url.rstrip("/"))


async def test_a_request_for_another_host_is_not_relayed(start, aiohttp_server) -> None:
    seen: list[dict[str, Any]] = []
    upstream = await aiohttp_server(upstream_app(seen))
    client = await start(upstream__url=str(upstream.make_url("")))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET http://example.com/steal HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'{"detail": "the request target must be a path"}')
    assert seen == []


async def test_an_upstream_that_breaks_off_mid_answer_cuts_the_clients_answer_too(
    start, aiohttp_server, caplog
) -> None:
    upstream = await aiohttp_server(upstream_app([]))
    client = await start(upstream__url=str(upstream.make_url("")))
    answer = await client.get("/api/v1/cut")
    assert answer.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await answer.read()  # never a short body that looks whole
    assert (await (await client.get("/api/v1/queue")).json())["total"] == 0  # the service goes on
    said = [r.getMessage() for r in caplog.records if r.name == "broadcaster.web.proxy"]
    base = str(upstream.make_url("")).rstrip("/")
    assert len(said) == 1 and said[0].startswith(f"upstream {base} broke off GET /api/v1/cut: ")
    assert not [r for r in caplog.records if r.exc_info]  # one line, no traceback
