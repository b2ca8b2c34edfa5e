"""The real tac-webbuilder backend's PostgreSQL layout and writes, through the service (issue 24).

The tables carry the types of the backend's own PostgreSQL schema (``VARCHAR`` with ``CHECK``s,
``BOOLEAN``, ``DOUBLE PRECISION``, ``NUMERIC(10,4)``, ``JSONB`` lists, ``feature_id`` and
``depends_on_phases``), and rows are written the way its repositories write them from another
connection: JSON text into ``JSONB``, ``datetime.isoformat()`` into ``TIMESTAMP``, the pause
toggle as an upsert of ``queue_config``. What its queue and history panels and its pause
toggle get is what a client of this service gets here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from sources import postgres
from sources.values import Cleaner
from tests.conftest import receive, receive_until
from tests.helpers import Service, eventually
from tests.servers import PostgresServer

BACKEND_SCHEMA = (
    """CREATE TABLE workflow_history (
        id BIGSERIAL PRIMARY KEY, adw_id VARCHAR(255) NOT NULL UNIQUE, issue_number INTEGER, nl_input TEXT,
        github_url TEXT, gh_issue_state VARCHAR(50), workflow_template VARCHAR(255), model_used VARCHAR(255),
        status VARCHAR(50) NOT NULL CHECK(status IN ('pending', 'running', 'completed', 'failed')),
        start_time TIMESTAMP WITHOUT TIME ZONE, end_time TIMESTAMP WITHOUT TIME ZONE, duration_seconds INTEGER,
        error_message TEXT, phase_count INTEGER, current_phase VARCHAR(255), success_rate DOUBLE PRECISION,
        retry_count INTEGER DEFAULT 0, input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0,
        cached_tokens INTEGER DEFAULT 0, total_tokens INTEGER DEFAULT 0,
        cache_efficiency_percent DOUBLE PRECISION DEFAULT 0.0, estimated_cost_total NUMERIC(10, 4) DEFAULT 0.0,
        actual_cost_total NUMERIC(10, 4) DEFAULT 0.0, cost_per_token NUMERIC(10, 6) DEFAULT 0.0,
        structured_input JSONB, cost_breakdown JSONB, token_breakdown JSONB, worktree_reused BOOLEAN DEFAULT FALSE,
        anomaly_flags JSONB, pr_merged BOOLEAN DEFAULT FALSE, workflow_type VARCHAR(100) DEFAULT 'planning',
        created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE phase_queue (
        queue_id VARCHAR(255) PRIMARY KEY, feature_id INTEGER NOT NULL, phase_number INTEGER NOT NULL,
        issue_number INTEGER,
        status VARCHAR(50) CHECK(status IN ('queued', 'ready', 'running', 'completed', 'blocked', 'failed'))
            DEFAULT 'queued',
        depends_on_phases JSONB DEFAULT '[]'::jsonb, phase_data JSONB,
        created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP, error_message TEXT,
        adw_id VARCHAR(255), pr_number INTEGER, priority INTEGER DEFAULT 50, queue_position INTEGER,
        ready_timestamp TIMESTAMP WITHOUT TIME ZONE, started_timestamp TIMESTAMP WITHOUT TIME ZONE)""",
    """CREATE TABLE queue_config (
        config_key VARCHAR(255) PRIMARY KEY, config_value TEXT NOT NULL,
        updated_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP)""",
    "CREATE TABLE hook_events (id BIGSERIAL PRIMARY KEY, payload JSONB NOT NULL)",
    "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'",
    "GRANT SELECT ON phase_queue, queue_config, workflow_history TO reader",
)


def history_row(n: int, status: str) -> str:
    """An INSERT as the backend's history sync writes one (JSON text into JSONB, ISO text into TIMESTAMP)."""
    return (
        "INSERT INTO workflow_history (adw_id, issue_number, nl_input, status, start_time, model_used,"
        " actual_cost_total, estimated_cost_total, cost_breakdown, structured_input, anomaly_flags, worktree_reused,"
        " success_rate, created_at, updated_at) VALUES"
        f" ('adw-{n:04d}', {100 + n}, 'Feature {n}', '{status}', '2026-12-0{n}T09:00:00.{n:06d}', 'claude-sonnet',"
        f' {n}.1234, 1.5, \'{{"by_phase": {{"build": {n}.5}}}}\', \'{{"level": "medium"}}\', \'[]\','
        f" {'TRUE' if n % 2 else 'FALSE'}, 0.75, '2026-12-0{n}T09:00:00.{n:06d}', '2026-12-0{n}T09:30:00')"
    )


def pause(value: str) -> str:
    """The pause toggle's write, as the backend's ``set_config_value`` makes it."""
    return (
        "INSERT INTO queue_config (config_key, config_value, updated_at)"
        f" VALUES ('queue_paused', '{value}', '2026-12-07T10:00:00.123456')"
        " ON CONFLICT(config_key) DO UPDATE SET config_value = excluded.config_value, updated_at = excluded.updated_at"
    )


def enqueue(queue_id: str, phase: int) -> str:
    """An INSERT as the backend's ``PhaseQueueRepository.create`` makes it."""
    return (
        "INSERT INTO phase_queue (queue_id, feature_id, phase_number, status, depends_on_phases, phase_data,"
        " created_at, updated_at, priority, queue_position, ready_timestamp) VALUES"
        f" ('{queue_id}', 12, {phase}, '{'ready' if phase == 1 else 'queued'}', '{[phase - 1] if phase > 1 else []}',"
        f' \'{{"title": "Phase {phase}", "workflow_type": "adw_sdlc_complete_iso", "adw_id": "a-{phase}"}}\','
        " '2026-12-07T09:00:00.5', '2026-12-07T09:00:00.5', 50, " + str(phase) + ", NULL)"
    )


def service_config(tmp_path: Path, pg: PostgresServer) -> str:
    (tmp_path / "pw").write_text("reader-pw\n")
    for name in ("agents", "trees"):
        (tmp_path / name).mkdir()
    return (
        '[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        f"[adw]\nagents_dir = '{tmp_path / 'agents'}'\ntrees_dir = '{tmp_path / 'trees'}'\nprocess_scan = false\n"
        f"[database]\nurl = 'postgresql://reader@127.0.0.1:{pg.port}/postgres'\npassword_file = 'pw'\n"
        "poll_interval = 0.1\n"
    )


async def database_entry(session: aiohttp.ClientSession, service: Service) -> dict[str, Any]:
    async with session.get(service.url("/api/v1/system-status")) as response:
        entry: dict[str, Any] = (await response.json())["services"]["database"]
        return entry


async def test_the_backends_queue_history_and_pause_toggle_reach_the_panels(pg: PostgresServer, tmp_path: Path) -> None:
    await pg.sql(*BACKEND_SCHEMA, *(history_row(n, s) for n, s in ((1, "completed"), (2, "failed"), (3, "completed"))))
    await pg.sql(history_row(4, "running"), enqueue("q-a", 1), enqueue("q-b", 2), pause("false"))
    service = Service(tmp_path, service_config(tmp_path, pg))
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(service.url("/ws/workflow-history")) as history:
                first = (await receive(history))["data"]
                assert (first["total_count"], [w["adw_id"] for w in first["workflows"]]) == (
                    4,
                    ["adw-0004", "adw-0003", "adw-0002", "adw-0001"],
                )
                newest = first["workflows"][0]
                assert (newest["status"], newest["actual_cost_total"], newest["worktree_reused"]) == (
                    "running",
                    4.1234,
                    False,
                )
                assert (newest["cost_breakdown"], newest["anomaly_flags"], newest["start_time"]) == (
                    {"by_phase": {"build": 4.5}},
                    [],
                    "2026-12-04T09:00:00.000004",
                )
            async with session.ws_connect(service.url("/ws/queue")) as queue:
                shown = (await receive(queue))["data"]
                assert (shown["paused"], shown["total"], [p["queue_id"] for p in shown["phases"]]) == (
                    False,
                    2,
                    ["q-a", "q-b"],
                )
                assert {k: shown["phases"][1][k] for k in ("parent_issue", "depends_on_phases", "phase")} == {
                    "parent_issue": 12,
                    "depends_on_phases": [1],
                    "phase": "Phase 2",
                }
                await pg.sql(pause("true"))  # the toggle clicked: the page flips on the next message
                assert (await receive(queue))["data"]["paused"] is True
                await pg.sql(pause("false"))
                assert (await receive(queue))["data"]["paused"] is False

                pg.stop_server()  # the database goes away under the running service
                down = await eventually(lambda: _entry_if(session, service, "error"), timeout=15)
                assert down["message"].startswith(f"cannot connect to postgresql://reader@127.0.0.1:{pg.port}/")
                async with session.get(service.url("/api/v1/queue")) as response:
                    kept = await response.json()
                assert (kept["total"], kept["paused"]) == (2, False)  # the last data stays
                pg.start_server()
                await eventually(lambda: _entry_if(session, service, "healthy"), timeout=20)
                await pg.sql(enqueue("q-c", 3))
                phases = await receive_until(queue, lambda m: m["data"]["total"] == 3)
                assert [p["queue_id"] for p in phases[-1]["data"]["phases"]] == ["q-a", "q-b", "q-c"]
    finally:
        await service.stop()


async def _entry_if(session: aiohttp.ClientSession, service: Service, status: str) -> dict[str, Any] | None:
    entry = await database_entry(session, service)
    return entry if entry["status"] == status else None


async def test_history_is_fetched_again_only_for_rows_that_moved(pg: PostgresServer) -> None:
    await pg.sql(*BACKEND_SCHEMA, *(history_row(n, "completed") for n in (1, 2, 3)))
    cleaner = Cleaner()
    reader = postgres.HistoryReader(cleaner)
    conn = await asyncpg.connect(pg.url("reader", "reader-pw"))
    try:

        async def same_as_whole() -> list[dict[str, Any]]:
            rows = await reader(conn)
            assert rows == await postgres.read_history(conn, cleaner)
            return list(rows)

        assert [r["adw_id"] for r in await same_as_whole()] == ["adw-0003", "adw-0002", "adw-0001"]
        await pg.sql("INSERT INTO hook_events (payload) VALUES ('{}')")  # the cluster moved, the history not
        assert await reader(conn) is postgres.UNCHANGED
        await pg.sql("UPDATE workflow_history SET status = 'failed', error_message = 'boom' WHERE adw_id = 'adw-0002'")
        assert [r["status"] for r in await same_as_whole()] == ["completed", "failed", "completed"]
        await pg.sql(history_row(4, "running"), "DELETE FROM workflow_history WHERE adw_id = 'adw-0001'")
        assert [r["adw_id"] for r in await same_as_whole()] == ["adw-0004", "adw-0003", "adw-0002"]
        assert (reader.full_reads, reader.fetched) == (1, 2)  # one whole read; then the one updated, the one new
    finally:
        await conn.close()
    other = await asyncpg.connect(pg.url("reader", "reader-pw"))
    try:
        assert len(await reader(other)) == 3 and reader.full_reads == 2  # a new connection reads whole
    finally:
        await other.close()


async def test_a_watch_leaves_out_the_history_when_only_other_tables_moved(pg: PostgresServer) -> None:
    await pg.sql(*BACKEND_SCHEMA, history_row(1, "completed"), enqueue("q-a", 1))
    cleaner = Cleaner()
    watch = postgres.PostgresWatch(
        pg.url("reader", "reader-pw"),
        {"queue": lambda c: postgres.read_queue(c, cleaner), "history": postgres.HistoryReader(cleaner)},
        poll_interval=0.05,
    )
    changes = watch.changes()
    try:
        assert sorted(await asyncio.wait_for(anext(changes), 10)) == ["history", "queue"]
        await pg.sql(enqueue("q-b", 2))
        moved = await asyncio.wait_for(anext(changes), 10)
        assert list(moved) == ["queue"] and moved["queue"].data.phases[1]["queue_id"] == "q-b"
    finally:
        await changes.aclose()
