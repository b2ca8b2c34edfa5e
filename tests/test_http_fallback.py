"""HTTP fallback: every channel over GET with the WebSocket's data, ETag and 304; the origin policy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError

from broadcaster.web.keys import DATABASES
from tests.agents_db import AgentsDb
from tests.conftest import receive, receive_until
from tests.helpers import WEBHOOK, json_app

# HTTP path -> (WebSocket path, how the HTTP body is built from the WebSocket data)
PATHS: dict[str, tuple[str, Any]] = {
    "/workflows": ("/ws/workflows", None),
    "/routes": ("/ws/routes", lambda d: {"routes": d, "total": len(d)}),
    "/workflow-history": ("/ws/workflow-history", None),
    "/adw-monitor": ("/ws/adw-monitor", None),
    "/queue": ("/ws/queue", None),
    "/queue/config": ("/ws/queue", lambda d: {"paused": d["paused"]}),
    "/system-status": ("/ws/system-status", None),
    "/webhook-status": ("/ws/webhook-status", None),
    "/adw-state/a1": ("/ws/adw-state/a1", None),
    "/adw-state/nobody": ("/ws/adw-state/nobody", None),
}


@pytest.fixture
async def live(start, workspace, write_state, aiohttp_server):
    """A service with data on every channel."""
    write_state("a1", issue_number="5", status="running", start_time="2026-11-25T10:00:00")
    db = AgentsDb(workspace.root / "agents.db").create()
    db.add_phase("q-1", 1, title="Plan", parent_issue=5, adw_id="a1", status="running")
    db.set_paused(True)
    for n in range(3):
        db.add_history(
            f"h{n}",
            "completed",
            model_used="opus" if n else "sonnet",
            workflow_template="sdlc",
            nl_input=f"Task number {n}",
            duration_seconds=10 * n,
            created_at=f"2026-11-2{n} 10:00:00",
        )
    webhook = await aiohttp_server(json_app({"/webhook-status": WEBHOOK}))
    client = await start(
        database__path=str(db.path),
        database__poll_interval=0.05,
        webhook__status_url=str(webhook.make_url("/webhook-status")),
        webhook__poll_interval=0.05,
    )
    async with client.ws_connect("/ws/webhook-status") as ws:  # wait for the first poll to land
        await receive_until(ws, lambda m: m["data"] == WEBHOOK)
    client.db = db
    return client


@pytest.mark.parametrize("prefix", ["/api/v1", "/api"])
async def test_every_fallback_answers_the_websocket_data(live, prefix: str) -> None:
    for path, (ws_path, shape) in PATHS.items():
        async with live.ws_connect(ws_path) as ws:
            data = (await receive(ws))["data"]
        response = await live.get(prefix + path)
        assert (response.status, response.content_type) == (200, "application/json"), path
        assert await response.json() == (shape(data) if shape else data), path
        etag = response.headers["ETag"]
        again = await live.get(prefix + path, headers={"If-None-Match": etag})
        assert (again.status, again.headers["ETag"], await again.read()) == (304, etag, b""), path
        stale = await live.get(prefix + path, headers={"If-None-Match": '"something-else"'})
        assert stale.status == 200, path


async def test_the_etag_changes_with_the_data(live) -> None:
    first = await live.get("/api/v1/queue/config")
    assert await first.json() == {"paused": True}
    async with live.ws_connect("/ws/queue") as ws:
        await receive(ws)
        live.db.set_paused(False)
        await receive(ws)
    second = await live.get("/api/v1/queue/config", headers={"If-None-Match": first.headers["ETag"]})
    assert (second.status, await second.json()) == (200, {"paused": False})
    assert second.headers["ETag"] != first.headers["ETag"]


async def test_requests_never_read_the_sources(live) -> None:
    [database] = live.app[DATABASES]
    reads = database.health.reads
    for _ in range(20):
        for path in ("/api/v1/queue", "/api/v1/workflow-history?status=completed&limit=2"):
            assert (await live.get(path)).status == 200
    assert database.health.reads == reads


async def test_history_filters_and_pages(live) -> None:
    async def ids(query: str) -> tuple[list[str], int]:
        response = await live.get(f"/api/v1/workflow-history?{query}")
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["analytics"]["total_workflows"] == 3  # analytics always cover every row
        return [w["adw_id"] for w in body["workflows"]], body["total_count"]

    assert await ids("limit=2") == (["h2", "h1"], 3)
    assert await ids("limit=2&offset=2") == (["h0"], 3)
    assert await ids("model=opus") == (["h2", "h1"], 2)
    assert await ids("template=sdlc&status=completed&sort_order=asc") == (["h0", "h1", "h2"], 3)
    assert await ids("search=NUMBER%201") == (["h1"], 1)
    assert await ids("sort_by=duration_seconds&sort_order=asc") == (["h0", "h1", "h2"], 3)
    assert await ids("status=failed") == ([], 0)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "limit must be 1-1000 and offset >= 0"),
        ("limit=x", "limit and offset must be non-negative integers"),
        ("offset=\u00b2", "limit and offset must be non-negative integers"),
        ("limit=99999999999999999999999", "limit and offset must be non-negative integers"),
        ("sort_order=up", "sort_order must be asc or desc"),
        ("sort_by=nope", "sort_by: no column 'nope' in workflow_history"),
        ("colour=red", "unknown parameter(s): colour"),
    ],
)
async def test_bad_history_parameters_are_refused(live, query: str, error: str) -> None:
    response = await live.get(f"/api/v1/workflow-history?{query}")
    assert (response.status, await response.json()) == (400, {"detail": error})


async def test_bad_adw_id_is_refused(start) -> None:
    client = await start()
    response = await client.get("/api/v1/adw-state/a%20b")
    assert (response.status, await response.json()) == (
        400,
        {"detail": "invalid adw_id 'a b': use 1-64 letters, digits, '_', '.', '-'"},
    )


async def test_pages_from_localhost_may_read_and_others_may_not(start) -> None:
    client = await start()
    ok = await client.get("/api/v1/queue", headers={"Origin": "http://localhost:5173"})
    assert (ok.status, ok.headers["Access-Control-Allow-Origin"], ok.headers["Access-Control-Expose-Headers"]) == (
        200,
        "http://localhost:5173",
        "ETag",
    )
    preflight = await client.options(
        "/api/v1/queue",
        headers={
            "Origin": "http://127.0.0.1:3000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert (preflight.status, preflight.headers["Access-Control-Allow-Headers"]) == (204, "if-none-match")
    evil = await client.get("/api/v1/queue", headers={"Origin": "https://evil.example"})
    assert (evil.status, await evil.json()) == (
        403,
        {"detail": "origin https://evil.example is not allowed (see [server] cors_origins)"},
    )
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws/adw-monitor", origin="https://evil.example")
    assert refused.value.status == 403
    async with client.ws_connect("/ws/adw-monitor", origin="http://localhost:5173") as ws:
        assert (await receive(ws))["type"] == "adw_monitor_update"


async def test_the_services_own_pages_may_always_read_it(start) -> None:
    client = await start(server__host="0.0.0.0", server__allowed_hosts=["adw.lan"])
    own = await client.get("/api/v1/queue", headers={"Origin": "http://adw.lan:8002", "Host": "adw.lan:8002"})
    assert (own.status, own.headers["Access-Control-Allow-Origin"]) == (200, "http://adw.lan:8002")
    other = await client.get("/api/v1/queue", headers={"Origin": "http://adw.lan:9999", "Host": "adw.lan:8002"})
    assert other.status == 403


async def test_configured_origins(start) -> None:
    client = await start(server__cors_origins=["https://dash.example"])
    assert (await client.get("/api/queue", headers={"Origin": "https://dash.example"})).status == 200
    assert (await client.get("/api/queue", headers={"Origin": "http://localhost:5173"})).status == 403
    anyone = await start(server__cors_origins=["*"], event_log__path="")  # a second service: its own log
    assert (await anyone.get("/api/queue", headers={"Origin": "https://x.example"})).status == 200


async def test_non_browser_clients_need_no_origin(start) -> None:
    client = await start()
    async with aiohttp.ClientSession() as session:
        async with session.get(client.make_url("/api/v1/workflows")) as response:
            assert (response.status, await response.json()) == (200, [])


async def test_every_error_the_service_answers_is_json_with_a_detail(start) -> None:
    client = await start()
    missing = await client.get("/api/v1/planned-features?x=1")
    assert (missing.status, await missing.json()) == (404, {"detail": "no such path: /api/v1/planned-features"})
    wrong = await client.post("/api/v1/queue", json={})
    assert (wrong.status, await wrong.json()) == (
        405,
        {"detail": "method POST is not allowed on /api/v1/queue (allowed: GET)"},
    )
    assert wrong.headers["Allow"] == "GET"
    plain = await client.get("/ws/queue")  # a WebSocket path asked without an upgrade
    assert plain.status == 400
    assert set(await plain.json()) == {"detail"}
    for response in (missing, wrong, plain):
        assert response.content_type == "application/json"


async def test_a_browser_page_can_read_an_error(start) -> None:
    client = await start()
    response = await client.get("/api/v1/nothing-here", headers={"Origin": "http://localhost:5173"})
    assert (response.status, await response.json()) == (404, {"detail": "no such path: /api/v1/nothing-here"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
