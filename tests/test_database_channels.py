"""The queue and workflow-history channels, read from a real SQLite file other connections write."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.agents_db import AgentsDb
from tests.conftest import EPOCH, ISO_TIME, receive, receive_settled, receive_until

T0 = "2026-11-25 10:00:00"


def expected_phase(queue_id: str, phase_number: int, title: str, *, variant: str = "old", **columns: Any) -> dict:
    phase_data = {"title": title, "content": f"Do {title}", "total_phases": 3}
    item: dict[str, Any] = {
        "queue_id": queue_id,
        "phase_number": phase_number,
        "issue_number": None,
        "status": "queued",
        "phase_data": phase_data,
        "created_at": T0,
        "updated_at": T0,
        "error_message": None,
        "adw_id": None,
        "pr_number": None,
        "priority": 50,
        "queue_position": None,
        "ready_timestamp": None,
        "started_timestamp": None,
        "metadata": phase_data,
        "phase": title,
    }
    if variant == "old":
        item.update(parent_issue=None, depends_on_phase=None, depends_on_phases=[])
    else:
        item.update(feature_id=None, parent_issue=None, depends_on_phases=[], depends_on_phase=None)
    item.update(columns)
    if variant == "new":
        item["parent_issue"] = item["feature_id"]
    return item


@pytest.fixture
def db(workspace) -> AgentsDb:
    return AgentsDb(workspace.root / "db" / "database.db")


@pytest.fixture
def start_db(start, db):
    async def go(**overrides: Any):
        return await start(database__path=str(db.path), database__poll_interval=0.05, **overrides)

    return go


async def test_queue_snapshot_then_changes_from_another_connection(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create(variant="old")
    db.add_phase("q-2", 2, title="API", parent_issue=83, depends_on_phase=1, created_at=T0, updated_at=T0)
    db.add_phase("q-1", 1, title="Schema", parent_issue=83, status="running", adw_id="a1", created_at=T0, updated_at=T0)
    db.add_phase("q-9", 1, title="Other", parent_issue=12, created_at=T0, updated_at=T0)
    client = await start_db()
    async with client.ws_connect("/api/v1/ws/queue") as ws:
        assert await receive(ws) == {
            "type": "queue_update",
            "channel": "queue",
            "seq": 1,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": {
                "phases": [
                    expected_phase("q-9", 1, "Other", parent_issue=12),
                    expected_phase("q-1", 1, "Schema", parent_issue=83, status="running", adw_id="a1"),
                    expected_phase("q-2", 2, "API", parent_issue=83, depends_on_phase=1, depends_on_phases=[1]),
                ],
                "total": 3,
                "paused": False,
            },
        }
        db.set_phase("q-1", status="completed")
        message = await receive(ws)
        assert (message["seq"], [p["status"] for p in message["data"]["phases"]]) == (
            2,
            ["queued", "completed", "queued"],
        )
        db.set_paused(True)
        message = await receive(ws)
        assert (message["seq"], message["data"]["paused"], message["data"]["total"]) == (3, True, 3)


async def test_the_newer_queue_layout_works_too(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create(variant="new")
    db.add_phase("f-1", 1, title="Plan", feature_id=7, depends_on_phases="[]", created_at=T0, updated_at=T0)
    db.add_phase("f-2", 2, title="Build", feature_id=7, depends_on_phases="[1]", created_at=T0, updated_at=T0)
    client = await start_db()
    async with client.ws_connect("/ws/queue") as ws:
        assert (await receive(ws))["data"] == {
            "phases": [
                expected_phase("f-1", 1, "Plan", variant="new", feature_id=7),
                expected_phase(
                    "f-2", 2, "Build", variant="new", feature_id=7, depends_on_phases=[1], depends_on_phase=1
                ),
            ],
            "total": 2,
            "paused": False,
        }


async def test_a_change_committed_by_another_process_arrives(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create()
    client = await start_db()
    async with client.ws_connect("/ws/queue") as ws:
        assert (await receive(ws))["data"] == {"phases": [], "total": 0, "paused": False}
        code = (
            f"import sqlite3; c = sqlite3.connect({str(db.path)!r}); "
            'c.execute("INSERT INTO phase_queue (queue_id, parent_issue, phase_number, status) '
            "VALUES ('p-1', 5, 1, 'ready')\"); c.commit()"
        )
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], check=True)
        message = await receive(ws)
        assert (message["seq"], [(p["queue_id"], p["status"], p["phase"]) for p in message["data"]["phases"]]) == (
            1,
            [("p-1", "ready", "1")],
        )


async def test_monitor_status_comes_from_the_queue_row_when_the_state_has_none(start_db, db, write_state) -> None:
    db.path.parent.mkdir()
    db.create()
    db.add_phase("q-1", 1, parent_issue=1, adw_id="a1", status="running")
    write_state("a1", issue_number=1)
    write_state("a2", issue_number=2)
    client = await start_db()
    async with client.ws_connect("/ws/adw-monitor") as ws:
        data = (await receive(ws))["data"]
        assert [(w["adw_id"], w["status"]) for w in data["workflows"]] == [("a1", "running"), ("a2", "queued")]
        db.set_phase("q-1", status="failed")
        data = (await receive(ws))["data"]
        assert [(w["adw_id"], w["status"]) for w in data["workflows"]] == [("a1", "failed"), ("a2", "queued")]


def add_runs(db: AgentsDb, count: int, *, start: int = 0) -> None:
    for n in range(start, start + count):
        db.add_history(
            f"adw-{n:03d}",
            "failed" if n % 4 == 3 else "completed",
            issue_number=n,
            model_used="sonnet" if n % 2 else "opus",
            workflow_template="adw_sdlc_iso",
            duration_seconds=100 + n,
            actual_cost_total=1.0,
            total_tokens=1000,
            cache_efficiency_percent=50.0,
            created_at=f"2026-11-{1 + n // 24:02d} {n % 24:02d}:00:00",
            cost_breakdown={"estimated_total": 1.0},
        )


async def test_history_sends_the_50_newest_rows_and_analytics_over_all(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create(queue=False)
    add_runs(db, 60)
    client = await start_db()
    async with client.ws_connect("/ws/workflow-history") as ws:
        message = await receive(ws)
        data = message["data"]
        assert (message["type"], message["seq"], data["total_count"]) == ("workflow_history_update", 1, 60)
        assert [w["adw_id"] for w in data["workflows"]] == [f"adw-{n:03d}" for n in range(59, 9, -1)]
        assert data["workflows"][0]["cost_breakdown"] == {"estimated_total": 1.0}
        assert data["analytics"] == {
            "total_count": 60,
            "success_rate": 75.0,
            "average_duration": 129.0,
            "recent_failures": 13,
            "total_workflows": 60,
            "completed_workflows": 45,
            "failed_workflows": 15,
            "avg_duration_seconds": 129.0,
            "success_rate_percent": 75.0,
            "workflows_by_model": {"opus": 30, "sonnet": 30},
            "workflows_by_template": {"adw_sdlc_iso": 60},
            "workflows_by_status": {"completed": 45, "failed": 15},
            "avg_cost": 1.0,
            "total_cost": 60.0,
            "avg_cost_per_completion": 1.0,
            "cost_trend_7day": 0.0,
            "cost_trend_30day": 0.0,
            "avg_tokens": 1000.0,
            "avg_cache_efficiency": 50.0,
        }
        add_runs(db, 1, start=60)
        data = (await receive(ws))["data"]
        assert (data["total_count"], data["workflows"][0]["adw_id"], len(data["workflows"])) == (61, "adw-060", 50)


async def test_history_can_come_from_its_own_file(start, workspace) -> None:
    main = AgentsDb(workspace.root / "main.db").create(history=False)
    history = AgentsDb(workspace.root / "history.db").create(queue=False)
    history.add_history("h1", "completed", created_at=T0)
    main.add_phase("q-1", 1, parent_issue=1)
    client = await start(
        database__path=str(main.path), database__history_path=str(history.path), database__poll_interval=0.05
    )
    async with client.ws_connect("/ws/workflow-history") as hist, client.ws_connect("/ws/queue") as queue:
        assert [w["adw_id"] for w in (await receive(hist))["data"]["workflows"]] == ["h1"]
        assert (await receive(queue))["data"]["total"] == 1
        history.add_history("h2", "failed", created_at="2026-11-25 11:00:00")
        assert [w["adw_id"] for w in (await receive(hist))["data"]["workflows"]] == ["h2", "h1"]


async def test_a_renamed_column_changes_the_rows_but_breaks_nothing(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create()
    db.add_phase("q-1", 1, title="Plan", parent_issue=1)
    client = await start_db()
    async with client.ws_connect("/ws/queue") as ws:
        assert [p["status"] for p in (await receive(ws))["data"]["phases"]] == ["queued"]
        db.execute("ALTER TABLE phase_queue RENAME COLUMN status TO state")
        db.add_phase("q-2", 2, title="Build", parent_issue=1, state="ready")
        phases = (await receive(ws))["data"]["phases"]
        assert [(p["queue_id"], p.get("status"), p["state"]) for p in phases] == [
            ("q-1", None, "queued"),
            ("q-2", None, "ready"),
        ]


def database_service(message: dict) -> dict:
    return message["data"]["services"]["database"]


async def test_a_missing_database_shows_empty_shapes_then_goes_live_when_it_appears(start_db, db) -> None:
    client = await start_db()
    async with client.ws_connect("/ws/queue") as queue, client.ws_connect("/ws/system-status") as status:
        assert await receive(queue) == {
            "type": "queue_update",
            "channel": "queue",
            "seq": 0,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": {"phases": [], "total": 0, "paused": False},
        }
        first = await receive_settled(status)
        assert (first["data"]["overall_status"], database_service(first)["status"]) == ("error", "error")
        assert database_service(first)["message"] == f"{db.path}: database file not found or not readable"
        db.path.parent.mkdir()
        db.create()
        db.add_phase("q-1", 1, parent_issue=1)
        message = await receive(queue)
        assert [p["queue_id"] for p in message["data"]["phases"]] == ["q-1"]
        healthy = await receive_until(status, lambda m: database_service(m)["status"] == "healthy")
        assert healthy[-1]["data"]["overall_status"] == "healthy"


async def test_a_missing_table_is_reported_and_picked_up_once_created(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create(queue=False)
    client = await start_db()
    async with client.ws_connect("/ws/queue") as queue, client.ws_connect("/ws/system-status") as status:
        assert (await receive(queue))["seq"] == 0
        service = database_service(await receive_settled(status))
        assert (service["status"], service["message"]) == ("degraded", f"queue: {db.path}: no such table: phase_queue")
        db.create(history=False)
        db.add_phase("q-1", 1, parent_issue=1)
        assert (await receive(queue))["data"]["total"] == 1
        await receive_until(status, lambda m: database_service(m)["status"] == "healthy")


async def test_a_locked_database_keeps_the_last_data_and_recovers(start_db, db) -> None:
    db.path.parent.mkdir()
    db.create()
    db.add_phase("q-1", 1, parent_issue=1)
    client = await start_db()
    async with client.ws_connect("/ws/queue") as queue, client.ws_connect("/ws/system-status") as status:
        assert (await receive(queue))["data"]["total"] == 1
        assert database_service(await receive_settled(status))["status"] == "healthy"
        code = (
            f"import sqlite3, sys; c = sqlite3.connect({str(db.path)!r}, isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); "
            "c.execute(\"INSERT INTO phase_queue (queue_id, parent_issue, phase_number) VALUES ('q-2', 1, 2)\"); "
            "print('locked', flush=True); sys.stdin.readline(); c.execute('COMMIT')"
        )
        with subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as writer:
            assert writer.stdin is not None and writer.stdout is not None
            assert await asyncio.to_thread(writer.stdout.readline) == "locked\n"
            locked = await receive_until(status, lambda m: database_service(m)["status"] != "healthy")
            assert database_service(locked[-1]) | {"uptime_seconds": 0, "uptime_human": ""} == {
                "name": "database",
                "status": "degraded",
                "uptime_seconds": 0,
                "uptime_human": "",
                "message": f"{db.path}: database is locked by a writer",
                "details": {"files": [str(db.path)]},
            }
            writer.stdin.write("go\n")
            writer.stdin.flush()
        message = await receive(queue)  # the queue kept its data while locked; this is the committed change
        assert (message["seq"], [p["queue_id"] for p in message["data"]["phases"]]) == (2, ["q-1", "q-2"])
        await receive_until(status, lambda m: database_service(m)["status"] == "healthy")


async def test_the_service_never_writes_to_the_agents_database(start_db, db, write_state) -> None:
    db.path.parent.mkdir()
    db.create()
    db.add_phase("q-1", 1, parent_issue=1)
    before = {p.name: p.stat().st_mtime_ns for p in db.path.parent.iterdir()}
    client = await start_db()
    async with client.ws_connect("/ws/queue") as ws:
        await receive(ws)
        db.add_phase("q-2", 2, parent_issue=1)
        await receive(ws)
    after_writer = {p.name: p.stat().st_mtime_ns for p in db.path.parent.iterdir()}
    await client.close()
    assert {p.name: p.stat().st_mtime_ns for p in db.path.parent.iterdir()} == after_writer
    assert set(after_writer) == set(before) == {"database.db"}


def test_agents_db_fixture_writes_through_its_own_connection(tmp_path: Path) -> None:
    db = AgentsDb(tmp_path / "x.db").create()
    db.add_phase("q", 1, parent_issue=1)
    import sqlite3

    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert conn.execute("SELECT queue_id FROM phase_queue").fetchall() == [("q",)]
    conn.close()
