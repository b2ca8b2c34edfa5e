"""PostgreSQL as a database source (issue 24): Debian's postgresql, a cluster made with initdb, a read-only role.

The same rows in SQLite and in PostgreSQL (with PostgreSQL's types: JSONB, NUMERIC money,
TIMESTAMP, BIGSERIAL) give the same channel data; the service's session is read-only and
needs nothing but SELECT; a change is seen without writing anything.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import asyncpg
import pytest

from broadcaster.channels import db_data
from sources import database, postgres
from sources.values import Cleaner
from tests.agents_db import AgentsDb
from tests.conftest import receive, receive_until
from tests.helpers import Service
from tests.servers import PostgresServer

SCHEMA = (
    """CREATE TABLE phase_queue (
        queue_id TEXT PRIMARY KEY, feature_id INTEGER NOT NULL, phase_number INTEGER NOT NULL,
        issue_number INTEGER, status TEXT NOT NULL DEFAULT 'queued', depends_on_phases JSONB DEFAULT '[]',
        phase_data JSONB, created_at TIMESTAMP WITHOUT TIME ZONE, updated_at TIMESTAMP WITHOUT TIME ZONE,
        error_message TEXT, adw_id TEXT, pr_number INTEGER, priority INTEGER DEFAULT 50,
        queue_position INTEGER, ready_timestamp TIMESTAMP WITHOUT TIME ZONE,
        started_timestamp TIMESTAMP WITHOUT TIME ZONE)""",
    "CREATE TABLE queue_config (config_key TEXT PRIMARY KEY, config_value TEXT, updated_at TIMESTAMP)",
    """CREATE TABLE workflow_history (
        id BIGSERIAL PRIMARY KEY, adw_id TEXT NOT NULL UNIQUE, issue_number INTEGER, nl_input TEXT,
        github_url TEXT, workflow_template TEXT, model_used TEXT, status TEXT NOT NULL,
        start_time TIMESTAMP WITHOUT TIME ZONE, end_time TIMESTAMP WITHOUT TIME ZONE, duration_seconds INTEGER,
        error_message TEXT, phase_count INTEGER, current_phase TEXT, retry_count INTEGER DEFAULT 0,
        input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0, cached_tokens INTEGER DEFAULT 0,
        total_tokens INTEGER DEFAULT 0, cache_efficiency_percent REAL DEFAULT 0,
        estimated_cost_total NUMERIC(10,4) DEFAULT 0, actual_cost_total NUMERIC(10,4) DEFAULT 0,
        cost_breakdown JSONB, token_breakdown JSONB, structured_input JSONB,
        created_at TIMESTAMP WITHOUT TIME ZONE, updated_at TIMESTAMP WITHOUT TIME ZONE)""",
    "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'",
    "GRANT SELECT ON phase_queue, queue_config, workflow_history TO reader",
)
PHASES = [
    {
        "queue_id": "q-2",
        "feature_id": 7,
        "phase_number": 2,
        "issue_number": 42,
        "status": "blocked",
        "depends_on_phases": [1],
        "phase_data": {"title": "Build", "content": "Do it", "total_phases": 3, "externalDocs": ["a.md"]},
        "created_at": "2026-11-25T10:00:00",
        "updated_at": "2026-11-25T10:05:30.250000",
        "adw_id": "77c90e61",
        "priority": 10,
    },
    {
        "queue_id": "q-1",
        "feature_id": 7,
        "phase_number": 1,
        "status": "completed",
        "depends_on_phases": [],
        "phase_data": {"title": "Plan", "total_phases": 3},
        "created_at": "2026-11-25T09:00:00",
        "updated_at": "2026-11-25T09:30:00",
        "error_message": None,
    },
]
HISTORY = [
    {
        "adw_id": "77c90e61",
        "issue_number": 42,
        "nl_input": "Add dark mode",
        "status": "completed",
        "start_time": "2026-11-25T09:00:00",
        "end_time": "2026-11-25T09:45:00",
        "duration_seconds": 2700,
        "model_used": "claude-sonnet",
        "workflow_template": "adw_sdlc_iso",
        "total_tokens": 1200,
        "cache_efficiency_percent": 12.5,
        "estimated_cost_total": 1.25,
        "actual_cost_total": 1.5,
        "cost_breakdown": {"by_phase": {"plan": 0.5, "build": 1.0}},
        "structured_input": {"level": "medium", "apiKey": "k-123"},
        "created_at": "2026-11-25T09:00:00",
        "updated_at": "2026-11-25T09:45:00",
    },
    {
        "adw_id": "a1b2c3d4",
        "issue_number": 43,
        "status": "failed",
        "start_time": "2026-11-26T08:00:00",
        "error_message": "tests failed",
        "actual_cost_total": 0.3333,
        "created_at": "2026-11-26T08:00:00",
        "updated_at": "2026-11-26T08:10:00",
    },
]


def _encoded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}


async def fill_postgres(pg: PostgresServer) -> None:
    await pg.sql(*SCHEMA)
    conn = await asyncpg.connect(pg.url())
    try:
        for table, rows in (("phase_queue", PHASES), ("workflow_history", HISTORY)):
            for row in rows:
                names = list(row)
                casts = [_cast(table, n) for n in names]
                values = ", ".join(f"${i + 1}{cast}" for i, cast in enumerate(casts))
                args = [
                    v if not cast or v is None else str(v)
                    for v, cast in zip(_encoded(row).values(), casts, strict=True)
                ]
                await conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({values})", *args)
        await conn.execute("INSERT INTO queue_config VALUES ('queue_paused', 'true', NULL)")
    finally:
        await conn.close()


def _cast(table: str, column: str) -> str:
    if column.endswith(("_at", "_time", "_timestamp")):
        return "::text::timestamp"
    if column in database.JSON_COLUMNS:
        return "::text::jsonb"
    if column.endswith("_total"):
        return "::text::numeric"
    return ""


def fill_sqlite(path: Path) -> None:
    db = AgentsDb(path).create(variant="new")
    for row in PHASES:
        db.execute(
            f"INSERT INTO phase_queue ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(_encoded(row).values()),
        )
    for row in HISTORY:
        db.execute(
            f"INSERT INTO workflow_history ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(_encoded(row).values()),
        )
    db.set_paused(True)


async def test_the_same_rows_give_the_same_channels_from_either_database(pg: PostgresServer, tmp_path: Path) -> None:
    cleaner = Cleaner()
    await fill_postgres(pg)
    fill_sqlite(tmp_path / "agents.db")
    async with aiosqlite.connect(tmp_path / "agents.db") as lite:
        lite_queue = await database.read_queue(lite, cleaner)
        lite_history = await database.read_history(lite, cleaner)
    conn = await asyncpg.connect(pg.url("reader", "reader-pw"))
    try:
        pg_queue = await postgres.read_queue(conn, cleaner)
        pg_history = await postgres.read_history(conn, cleaner)
    finally:
        await conn.close()
    for name in ("created_at", "updated_at"):  # SQLite's default is its own text; both were given ISO times
        assert [p[name] for p in pg_queue.phases] == [p[name] for p in lite_queue.phases]
    assert db_data.queue(pg_queue) == db_data.queue(lite_queue)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert db_data.history(pg_history, now=now) == db_data.history(lite_history, now=now)
    assert pg_history[1]["structured_input"] == {"level": "medium", "apiKey": "[redacted]"}  # newest first
    assert [r["actual_cost_total"] for r in pg_history] == [0.3333, 1.5]
    assert (pg_queue.paused, [p["queue_id"] for p in pg_queue.phases]) == (True, ["q-1", "q-2"])


async def test_the_session_is_read_only_and_needs_nothing_but_select(pg: PostgresServer) -> None:
    await pg.sql(*SCHEMA)
    await fill_postgres_rows_only(pg)
    watch = postgres.PostgresWatch(
        pg.url("reader", "reader-pw"),
        {"queue": lambda c: postgres.read_queue(c, Cleaner())},
        poll_interval=0.05,
    )
    changes = watch.changes()
    try:
        first = await asyncio.wait_for(anext(changes), 10)
        assert first["queue"].error is None and [p["queue_id"] for p in first["queue"].data.phases] == ["q-1"]
        assert watch.health.message == f"reading postgresql://reader@127.0.0.1:{pg.port}/postgres"
        conn = await asyncpg.connect(
            pg.url("reader", "reader-pw"), server_settings={"default_transaction_read_only": "on"}
        )
        try:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("CREATE TABLE x (y int)")
        finally:
            await conn.close()
        await pg.sql("INSERT INTO phase_queue (queue_id, feature_id, phase_number) VALUES ('q-9', 1, 9)")
        second = await asyncio.wait_for(anext(changes), 10)
        assert [p["queue_id"] for p in second["queue"].data.phases] == ["q-1", "q-9"]
    finally:
        await changes.aclose()


async def fill_postgres_rows_only(pg: PostgresServer) -> None:
    await pg.sql("INSERT INTO phase_queue (queue_id, feature_id, phase_number) VALUES ('q-1', 1, 1)")


async def test_the_service_serves_postgres_rows_live_and_keeps_the_password_to_itself(
    pg: PostgresServer, tmp_path: Path
) -> None:
    await fill_postgres(pg)
    (tmp_path / "pw").write_text("reader-pw\n")
    (tmp_path / "agents").mkdir()
    (tmp_path / "trees").mkdir()
    url = f"postgresql://reader@127.0.0.1:{pg.port}/postgres"
    config = (
        '[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        f"[adw]\nagents_dir = '{tmp_path / 'agents'}'\ntrees_dir = '{tmp_path / 'trees'}'\n"
        f"[database]\nurl = '{url}'\npassword_file = 'pw'\npoll_interval = 0.1\n"
    )
    service = Service(tmp_path, config)
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(service.url("/ws/queue")) as ws:
                first = await receive(ws)
                assert [p["queue_id"] for p in first["data"]["phases"]] == ["q-1", "q-2"]
                assert first["data"]["paused"] is True
                await pg.sql("UPDATE queue_config SET config_value = 'false' WHERE config_key = 'queue_paused'")
                changed = await receive_until(ws, lambda m: m["data"]["paused"] is False)
                assert changed[-1]["seq"] == first["seq"] + 1
            async with session.get(service.url("/api/v1/system-status")) as response:
                entry = (await response.json())["services"]["database"]
            assert (entry["status"], entry["message"]) == ("healthy", f"reading {url}")
            history = await (await session.get(service.url("/api/v1/workflow-history"))).json()
            assert [w["adw_id"] for w in history["workflows"]] == ["a1b2c3d4", "77c90e61"]
    finally:
        await service.stop()
    assert not any("reader-pw" in line for line in service.stderr)


async def test_a_database_down_wrong_or_without_rights_costs_status_never_the_feed(pg: PostgresServer) -> None:
    await pg.sql(*SCHEMA)
    await fill_postgres_rows_only(pg)
    await pg.sql("CREATE ROLE nobody LOGIN PASSWORD 'nobody-pw'", "GRANT SELECT ON phase_queue, queue_config TO nobody")
    cleaner = Cleaner()
    readers = {
        "queue": lambda c: postgres.read_queue(c, cleaner),
        "history": lambda c: postgres.read_history(c, cleaner),
    }
    wrong = postgres.PostgresWatch(pg.url("reader", "not-it"), readers, poll_interval=0.05)
    changes = wrong.changes()
    try:
        failed = await asyncio.wait_for(anext(changes), 10)
        assert {name: r.error is not None for name, r in failed.items()} == {"queue": True, "history": True}
        assert wrong.health.ok is False
        assert wrong.health.message.startswith(f"cannot connect to postgresql://reader@127.0.0.1:{pg.port}/postgres: ")
        assert "password authentication failed" in wrong.health.message and "not-it" not in wrong.health.message
    finally:
        await changes.aclose()

    partial = postgres.PostgresWatch(pg.url("nobody", "nobody-pw"), readers, poll_interval=0.05)
    changes = partial.changes()
    try:
        first = await asyncio.wait_for(anext(changes), 10)
        assert [p["queue_id"] for p in first["queue"].data.phases] == ["q-1"]  # its table is readable
        assert first["history"].error == (
            f"postgresql://nobody@127.0.0.1:{pg.port}/postgres: permission denied for table workflow_history"
        )
        assert partial.health.ok is True and list(partial.health.errors) == ["history"]
    finally:
        await changes.aclose()

    watch = postgres.PostgresWatch(pg.url("reader", "reader-pw"), readers, poll_interval=0.05)
    changes = watch.changes()
    try:
        assert (await asyncio.wait_for(anext(changes), 10))["queue"].error is None
        pg.stop_server()  # the database goes away under the service
        down = await asyncio.wait_for(anext(changes), 10)
        assert down["queue"].error is not None and watch.health.ok is False
        pg.start_server()
        back = await asyncio.wait_for(anext(changes), 20)  # reconnected with backoff
        assert back["queue"].error is None and [p["queue_id"] for p in back["queue"].data.phases] == ["q-1"]
        assert watch.health.ok is True
    finally:
        await changes.aclose()


async def test_a_notify_on_a_listened_channel_is_read_at_once(pg: PostgresServer) -> None:
    await pg.sql(*SCHEMA)
    await fill_postgres_rows_only(pg)
    cleaner = Cleaner()
    watch = postgres.PostgresWatch(
        pg.url("reader", "reader-pw"),
        {"queue": lambda c: postgres.read_queue(c, cleaner)},
        poll_interval=3600,  # no hint poll within the test: only the notification can wake it
        listen=["queue_changed"],
    )
    changes = watch.changes()
    try:
        await asyncio.wait_for(anext(changes), 10)
        await pg.sql(
            "INSERT INTO phase_queue (queue_id, feature_id, phase_number) VALUES ('q-2', 1, 2)",
            "NOTIFY queue_changed",
        )
        second = await asyncio.wait_for(anext(changes), 10)
        assert [p["queue_id"] for p in second["queue"].data.phases] == ["q-1", "q-2"]
    finally:
        await changes.aclose()


async def test_a_database_not_there_yet_or_without_a_table_is_said_and_picked_up(pg: PostgresServer) -> None:
    await pg.sql(SCHEMA[0], SCHEMA[1], SCHEMA[3], "GRANT SELECT ON phase_queue, queue_config TO reader")
    await fill_postgres_rows_only(pg)
    pg.stop_server()  # down when the service starts
    cleaner = Cleaner()
    watch = postgres.PostgresWatch(
        pg.url("reader", "reader-pw"),
        {"queue": lambda c: postgres.read_queue(c, cleaner), "history": lambda c: postgres.read_history(c, cleaner)},
        poll_interval=0.05,
    )
    changes = watch.changes()
    try:
        down = await asyncio.wait_for(anext(changes), 10)
        assert {name: r.error for name, r in down.items()} == {
            "queue": watch.health.message,
            "history": watch.health.message,
        }
        assert watch.health.message.startswith(f"cannot connect to postgresql://reader@127.0.0.1:{pg.port}/postgres: ")
        pg.start_server()
        up = await asyncio.wait_for(anext(changes), 20)
        assert [p["queue_id"] for p in up["queue"].data.phases] == ["q-1"]
        assert up["history"].error == (
            f'postgresql://reader@127.0.0.1:{pg.port}/postgres: relation "workflow_history" does not exist'
        )
        await pg.sql(SCHEMA[2], "GRANT SELECT ON workflow_history TO reader")
        created = await asyncio.wait_for(anext(changes), 10)  # the DDL moved the WAL: read again
        assert (created["history"].error, created["history"].data) == (None, [])
        assert watch.health.errors == {}
    finally:
        await changes.aclose()
