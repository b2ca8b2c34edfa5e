"""Hostile values and files: each costs its own item, never a feed; nothing leaks; nothing is followed out."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from sources.values import REDACTED
from tests.agents_db import AgentsDb
from tests.conftest import UPGRADE, receive, receive_settled, receive_until

MARKER = "<nested deeper than 64 levels>"


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"n": value}
    return value


def depth_of_marker(data: Any) -> int:
    levels = 0
    while isinstance(data, dict):
        data = data["n"]
        levels += 1
    assert data == MARKER
    return levels


async def test_odd_state_values_cost_their_item_and_the_feed_goes_on(start, write_state) -> None:
    deep = json.dumps({"adw_id": "deep", "issue_number": "5", **nested(300)}).encode()
    write_state("deep", raw=deep)  # orjson reads 1,024 levels, writes 255
    write_state("super", issue_number="²", status="running")  # isdigit() says yes, int() says no
    write_state("long", issue_number="9" * 5000, current_cost="9" * 5000, error_count="²")
    write_state("good", issue_number="7", status="running")
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws/adw-state/deep") as ws:
        data = (await receive(ws))["data"]
        assert depth_of_marker(data["n"]) == 63  # the state is level 0; at 64 the rest becomes a marker
    async with client.ws_connect("/ws/workflows") as ws:
        assert [w["adw_id"] for w in (await receive(ws))["data"]] == ["deep", "good"]  # no integer issue: left out
    async with client.ws_connect("/ws/adw-monitor") as ws:
        monitor = (await receive(ws))["data"]
        by_id = {w["adw_id"]: w for w in monitor["workflows"]}
        assert set(by_id) == {"deep", "super", "long", "good"}
        assert [by_id[i]["issue_number"] for i in ("super", "long", "good")] == [None, None, 7]
        assert (by_id["long"]["current_cost"], by_id["long"]["error_count"]) == (None, 0)
        write_state("good", issue_number="7", status="completed")  # the feed is alive
        await receive_until(
            ws, lambda m: {w["adw_id"]: w["status"] for w in m["data"]["workflows"]}["good"] == "completed"
        )
    async with client.ws_connect("/ws/system-status") as ws:
        assert (await receive(ws))["data"]["overall_status"] == "healthy"


def bad_rows_db(path: Path) -> AgentsDb:
    db = AgentsDb(path).create(variant="new")
    db.add_phase("q-blob", 1, feature_id=1, status="queued", phase_data=b"\x00\x01\xff")
    db.add_phase("q-inf", 2, feature_id=1, status="queued", priority=float("inf"))  # 9e999 in INTEGER
    db.add_phase("q-deep", 3, feature_id=1, status="queued", phase_data="[" * 2000 + "]" * 2000)
    db.add_phase("q-big", 4, feature_id=1, status="queued", phase_data='{"title": "Big", "n": ' + "9" * 40 + "}")
    db.execute(
        "INSERT INTO phase_queue (queue_id, feature_id, phase_number, status, error_message)"
        " VALUES ('q-text', 1, 5, 'queued', CAST(x'41ff42' AS TEXT))"
    )
    db.add_phase("q-good", 6, feature_id=1, status="running", phase_data='{"title": "Good"}')
    db.add_history("h-blob", "completed", actual_cost_total=b"\x01\x02", duration_seconds=float("inf"))
    db.add_history("h-good", "completed", actual_cost_total=2.5, duration_seconds=60)
    return db


async def test_odd_database_values_cost_their_value_and_the_feed_goes_on(start, workspace) -> None:
    path = workspace.root / "agents.db"
    db = bad_rows_db(path)
    client = await start(database__path=str(path), broadcast__min_interval=0)
    async with client.ws_connect("/ws/queue") as ws:
        phases = {p["queue_id"]: p for p in (await receive(ws))["data"]["phases"]}
        assert list(phases) == ["q-blob", "q-inf", "q-deep", "q-big", "q-text", "q-good"]
        assert (phases["q-blob"]["phase_data"], phases["q-blob"]["metadata"]) == ("<binary: 3 bytes>", {})
        assert phases["q-inf"]["priority"] == "Infinity"
        assert (phases["q-deep"]["metadata"], phases["q-deep"]["phase"]) == ({}, "3")  # too deep to parse: no metadata
        assert (phases["q-big"]["metadata"], phases["q-big"]["phase"]) == ({"title": "Big", "n": 1e40}, "Big")
        assert phases["q-text"]["error_message"] == "A\ufffdB"
        db.set_phase("q-good", status="completed")
        changed = await receive(ws)
        assert {p["queue_id"]: p["status"] for p in changed["data"]["phases"]}["q-good"] == "completed"
    async with client.ws_connect("/ws/workflow-history") as ws:
        history = (await receive(ws))["data"]
        assert [(r["adw_id"], r["actual_cost_total"]) for r in history["workflows"]] == [
            ("h-good", 2.5),
            ("h-blob", "<binary: 2 bytes>"),
        ]
        assert (history["analytics"]["total_cost"], history["analytics"]["avg_duration_seconds"]) == (2.5, 60.0)
    async with client.ws_connect("/ws/system-status") as ws:
        assert (await receive(ws))["data"]["services"]["database"]["status"] == "healthy"


async def test_an_unreadable_trees_dir_is_reported_and_the_feed_goes_on(start, write_state, workspace) -> None:
    write_state("a1", status="running", issue_number="1")
    workspace.trees.rmdir()
    workspace.trees.symlink_to(workspace.trees)  # a symlink loop: listing it fails even for root
    client = await start(broadcast__min_interval=0, adw__trees_poll_interval=0.05)
    async with client.ws_connect("/ws/system-status") as ws:
        entry = (await receive(ws))["data"]["services"]["adw_files"]
        assert (entry["status"], entry["message"]) == (
            "degraded",
            f"{workspace.trees}: cannot list: Too many levels of symbolic links",
        )
    async with client.ws_connect("/ws/adw-state/a1") as ws:
        await receive(ws)
        write_state("a1", status="completed", issue_number="1")
        assert (await receive(ws))["data"]["status"] == "completed"
    workspace.trees.unlink()
    workspace.trees.mkdir()
    async with client.ws_connect("/ws/system-status") as ws:
        await receive_until(ws, lambda m: m["data"]["services"]["adw_files"]["status"] == "healthy")


async def test_special_linked_and_oversized_state_files_are_reported_not_read(start, write_state, workspace) -> None:
    outside = workspace.root / "outside"
    outside.mkdir()
    (outside / "adw_state.json").write_bytes(orjson.dumps({"adw_id": "x", "secret_plan": "exfiltrated"}))
    (workspace.agents / "linked-dir").symlink_to(outside)  # a linked ADW directory
    (workspace.agents / "linked-file").mkdir()
    (workspace.agents / "linked-file" / "adw_state.json").symlink_to(outside / "adw_state.json")
    (workspace.agents / "zero").mkdir()
    (workspace.agents / "zero" / "adw_state.json").symlink_to("/dev/zero")
    (workspace.agents / "fifo").mkdir()
    os.mkfifo(workspace.agents / "fifo" / "adw_state.json")  # a read would block forever
    write_state("big", note="x" * 5000)
    write_state("good", issue_number="1")
    client = await start(broadcast__min_interval=0, adw__max_state_bytes=4096)
    for adw_id in ("linked-dir", "linked-file", "zero", "fifo", "big"):
        async with client.ws_connect(f"/ws/adw-state/{adw_id}") as ws:
            assert (await receive(ws))["data"] == {}, adw_id
    async with client.ws_connect("/ws/system-status") as ws:
        entry = (await receive(ws))["data"]["services"]["adw_files"]
    assert entry["status"] == "degraded"
    assert entry["message"].startswith("5 unreadable or skipped state file(s), last good state kept: ")
    path = workspace.agents
    big_size = (path / "big" / "adw_state.json").stat().st_size
    for expected in (
        f"{path / 'big' / 'adw_state.json'}: {big_size} bytes, more than [adw] max_state_bytes (4096), not read",
        f"{path / 'fifo' / 'adw_state.json'}: not a regular file (a FIFO), not read",
    ):
        assert expected in entry["message"]
    assert entry["message"].endswith("; and 2 more")
    assert "exfiltrated" not in await (await client.get("/api/v1/adw-monitor")).text()
    async with client.ws_connect("/ws/adw-state/good") as ws:  # the feed goes on
        await receive(ws)
        write_state("good", issue_number="2")
        assert (await receive(ws))["data"] == {"adw_id": "good", "issue_number": "2"}


async def test_the_reasons_name_links_and_devices(start, workspace) -> None:
    (workspace.agents / "zero").mkdir()
    (workspace.agents / "zero" / "adw_state.json").symlink_to("/dev/zero")
    (workspace.agents / "linked-dir").symlink_to(workspace.root)
    client = await start()
    async with client.ws_connect("/ws/system-status") as ws:
        message = (await receive_settled(ws))["data"]["services"]["adw_files"]["message"]
    assert message == (
        "2 unreadable or skipped state file(s), last good state kept: "
        f"{workspace.agents / 'linked-dir' / 'adw_state.json'}: a symbolic link, not followed"
        " (ADW directories must be real); "
        f"{workspace.agents / 'zero' / 'adw_state.json'}: a symbolic link, not followed"
    )


SECRET_STATE = {
    "issue_number": "3",
    "github_token": "ghp_supersecret1",
    "env": {"DB_PASSWORD": "hunter2-supersecret", "apiKey": "sk-supersecret", "PATH": "/usr/bin"},
    "cookies": "session=supersecret",
    "total_tokens": 1234,
    "token_breakdown": {"input_tokens": 1000, "output_tokens": 234},
    "headers": [{"Authorization": "Bearer supersecret"}],
}
REDACTED_STATE = {
    "adw_id": "a1",
    "issue_number": "3",
    "github_token": REDACTED,
    "env": {"DB_PASSWORD": REDACTED, "apiKey": REDACTED, "PATH": "/usr/bin"},
    "cookies": REDACTED,
    "total_tokens": 1234,
    "token_breakdown": {"input_tokens": 1000, "output_tokens": 234},
    "headers": [{"Authorization": REDACTED}],
}


async def test_secrets_never_reach_a_message_an_answer_or_the_log(start, write_state, workspace) -> None:
    write_state("a1", **SECRET_STATE)
    db_path = workspace.root / "agents.db"
    db = AgentsDb(db_path).create()
    db.execute("ALTER TABLE workflow_history ADD COLUMN github_token TEXT")
    db.add_history("h1", "completed", github_token="ghp_supersecret2", structured_input='{"api_key": "supersecret3"}')
    client = await start(database__path=str(db_path))
    async with client.ws_connect("/ws/adw-state/a1") as ws:
        assert (await receive(ws))["data"] == REDACTED_STATE
    assert await (await client.get("/api/v1/adw-state/a1")).json() == REDACTED_STATE
    row = (await (await client.get("/api/v1/workflow-history")).json())["workflows"][0]
    assert (row["github_token"], row["structured_input"]) == (REDACTED, {"api_key": REDACTED})
    events = await (await client.get("/api/v1/events?channel=adw-state:a1")).json()
    assert events["events"][0]["data"] == REDACTED_STATE
    await client.close()  # flushes and closes the log
    log = workspace.root / ".state" / "events.db"
    stored = b"".join(p.read_bytes() for p in log.parent.iterdir() if p.name.startswith("events.db"))
    assert b"supersecret" not in stored
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


async def test_secrets_already_in_an_old_log_are_redacted_when_read(start, workspace) -> None:
    log = workspace.root / ".state" / "events.db"
    log.parent.mkdir()
    with sqlite3.connect(log) as conn:  # a log written before redaction existed
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, seq INTEGER NOT NULL,"
            " type TEXT NOT NULL, data BLOB NOT NULL, digest TEXT NOT NULL, timestamp REAL NOT NULL,"
            " UNIQUE (channel, seq))"
        )
        conn.execute("INSERT INTO meta VALUES ('epoch', '00112233445566aa'), ('running', '0')")
        data = orjson.dumps({"adw_id": "gone", "password": "old-secret"})
        conn.execute("INSERT INTO events VALUES (1, 'adw-state:gone', 1, 'adw_state_update', ?, 'd', 1.0)", (data,))
    conn.close()
    client = await start()
    body = await (await client.get("/api/v1/events?channel=adw-state:gone")).json()
    assert body["events"][0]["data"] == {"adw_id": "gone", "password": REDACTED}
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    await client.close()
    stored = b"".join(p.read_bytes() for p in log.parent.iterdir() if p.name.startswith("events.db"))
    assert b"old-secret" not in stored  # scrubbed on disk, not only hidden on the way out


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8002", "192.168.1.5", "localhost.evil.example"])
async def test_a_foreign_host_gets_403_for_http_and_websocket(start, host: str) -> None:
    client = await start()
    response = await client.get("/api/v1/queue", headers={"Host": host})
    assert (response.status, await response.json()) == (
        403,
        {"detail": f"host {host!r} is not allowed (see [server] allowed_hosts)"},
    )
    response = await client.get("/ws/queue", headers={**UPGRADE, "Host": host})
    assert response.status == 403


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8002", "localhost", "LOCALHOST:1", "[::1]:8002", "127.1.2.3", "app.localhost"]
)
async def test_loopback_hosts_are_served(start, host: str) -> None:
    client = await start()
    response = await client.get("/api/v1/queue", headers={"Host": host})
    assert response.status == 200


async def test_allowed_hosts_widen_the_check_and_a_public_bind_without_a_list_skips_it(start) -> None:
    client = await start(server__allowed_hosts=["dash.internal"])
    assert (await client.get("/api/v1/queue", headers={"Host": "dash.internal:8002"})).status == 200
    assert (await client.get("/api/v1/queue", headers={"Host": "other.internal"})).status == 403
    public = await start(server__host="0.0.0.0", event_log__path="")
    assert (await public.get("/api/v1/queue", headers={"Host": "my-box.lan:8002"})).status == 200


async def test_a_malformed_since_on_a_socket_is_a_400_not_a_500(start) -> None:
    client = await start()
    for since in ("%C2%B2", "1e20", "-1", "9" * 19):
        response = await client.get(f"/ws/queue?since={since}", headers=UPGRADE)
        assert response.status == 400, since


async def test_a_ping_carrying_a_deep_structure_gets_a_plain_pong(start) -> None:
    client = await start()
    async with client.ws_connect("/ws/queue") as ws:
        await receive(ws)
        await ws.send_str('{"type": "ping", "timestamp": ' + "[" * 300 + "]" * 300 + "}")
        assert await receive(ws) == {"type": "pong", "timestamp": None}
        await ws.send_str('{"type": "ping", "timestamp": 17}')
        assert await receive(ws) == {"type": "pong", "timestamp": 17}


async def test_a_large_openapi_document_is_read_whole(start, aiohttp_server) -> None:
    paths = {
        f"/api/v1/item{i}/{'x' * 80}": {"get": {"operationId": f"op{i}", "summary": "s" * 40}} for i in range(10000)
    }
    document = orjson.dumps({"openapi": "3.1.0", "paths": paths})
    assert len(document) > 1_600_000

    async def openapi(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for i in range(0, len(document), 32768):  # arrives in pieces, as over a real network
            await response.write(document[i : i + 32768])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/openapi.json", openapi)
    server = await aiohttp_server(app)
    client = await start(routes__openapi_url=str(server.make_url("/openapi.json")), routes__poll_interval=60)
    async with client.ws_connect("/ws/routes", max_msg_size=0) as ws:
        routes = (await receive_until(ws, lambda m: len(m["data"]) > 0))[-1]["data"]
    assert sum(r["path"].startswith("/api/v1/item") for r in routes) == 10000
    async with client.ws_connect("/ws/system-status") as ws:
        entry = (await receive(ws))["data"]["services"]["openapi"]
    assert (entry["status"], entry["message"]) == ("healthy", f"10000 routes from {server.make_url('/openapi.json')}")
