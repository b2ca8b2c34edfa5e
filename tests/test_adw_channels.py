"""The three ADW file channels end to end: real files, a real watcher, real sockets."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from broadcaster.web.keys import ADW_FILES
from tests.conftest import EPOCH, ISO_TIME, receive


def monitor_item(adw_id: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "adw_id": adw_id,
        "issue_number": 7,
        "pr_number": None,
        "issue_class": "/feature",
        "title": "Add dark mode",
        "status": "running",
        "current_phase": "plan",
        "phase_progress": 8.3,
        "workflow_template": "adw_sdlc_iso",
        "start_time": "2026-11-25T10:00:00",
        "end_time": "2026-11-25T10:30:00",
        "duration_seconds": 1800.0,
        "github_url": "https://github.com/acme/shop/issues/7",
        "worktree_path": None,
        "current_cost": None,
        "estimated_cost_total": 1.5,
        "error_count": 0,
        "last_error": None,
        "is_process_active": True,
        "pids": [],
        "last_activity": ISO_TIME,
        "stalled": False,
        "stalled_seconds": None,
        "phases_completed": [],
        "total_phases": 6,
    }
    item.update(overrides)
    return item


STATE = {
    "issue_number": "7",
    "issue_class": "/feature",
    "nl_input": "Add dark mode",
    "workflow_template": "adw_sdlc_iso",
    "start_time": "2026-11-25T10:00:00",
    "end_time": "2026-11-25T10:30:00",
    "estimated_cost_total": 1.5,
    "status": "running",
}


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "rename"])
async def test_adw_state_snapshot_then_update(start, write_state, atomic: bool) -> None:
    write_state("a1b2c3d4", **STATE)
    client = await start()
    async with client.ws_connect("/ws/adw-state/a1b2c3d4") as ws:
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1b2c3d4",
            "adw_id": "a1b2c3d4",
            "seq": 1,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1b2c3d4", **STATE},
        }
        write_state("a1b2c3d4", atomic=atomic, **{**STATE, "status": "completed", "branch_name": "feat-7"})
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1b2c3d4",
            "adw_id": "a1b2c3d4",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1b2c3d4", **STATE, "status": "completed", "branch_name": "feat-7"},
        }


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "rename"])
async def test_workflows_snapshot_then_update(start, write_state, workspace, atomic: bool) -> None:
    write_state("a1b2c3d4", **STATE)
    write_state("skipped1", issue_number="not-a-number")  # entries without an integer issue are left out
    (workspace.agents / "port_allocations.json").write_text("{}")  # plain files in agents/ are skipped
    client = await start(adw__github_repo="acme/shop")
    async with client.ws_connect("/ws/workflows") as ws:
        assert await receive(ws) == {
            "type": "workflows_update",
            "channel": "workflows",
            "seq": 1,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": [
                {
                    "adw_id": "a1b2c3d4",
                    "issue_number": 7,
                    "phase": "plan",
                    "github_url": "https://github.com/acme/shop/issues/7",
                },
            ],
        }
        (workspace.agents / "a1b2c3d4" / "adw_build_iso").mkdir()
        (workspace.agents / "a1b2c3d4" / "adw_plan_iso").mkdir()
        assert await receive(ws) == {
            "type": "workflows_update",
            "channel": "workflows",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": [
                {
                    "adw_id": "a1b2c3d4",
                    "issue_number": 7,
                    "phase": "build",
                    "github_url": "https://github.com/acme/shop/issues/7",
                },
            ],
        }
        write_state(
            "b9", atomic=atomic, issue_number=12, start_time="2026-11-25T11:00:00", github_url="https://example.test/12"
        )
        assert await receive(ws) == {
            "type": "workflows_update",
            "channel": "workflows",
            "seq": 3,
            "timestamp": ISO_TIME,
            "data": [
                {"adw_id": "b9", "issue_number": 12, "phase": "plan", "github_url": "https://example.test/12"},
                {
                    "adw_id": "a1b2c3d4",
                    "issue_number": 7,
                    "phase": "build",
                    "github_url": "https://github.com/acme/shop/issues/7",
                },
            ],
        }


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "rename"])
async def test_adw_monitor_snapshot_then_update(start, write_state, workspace, atomic: bool) -> None:
    write_state("a1b2c3d4", **STATE)
    (workspace.agents / "a1b2c3d4" / "adw_plan_iso").mkdir()
    client = await start(adw__github_repo="acme/shop")
    async with client.ws_connect("/api/v1/ws/adw-monitor") as ws:
        assert await receive(ws) == {
            "type": "adw_monitor_update",
            "channel": "adw-monitor",
            "seq": 1,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": {
                "workflows": [monitor_item("a1b2c3d4")],
                "summary": {"total": 1, "running": 1, "completed": 0, "failed": 0, "paused": 0, "stalled": 0},
                "last_updated": ISO_TIME,
            },
        }
        (workspace.agents / "a1b2c3d4" / "adw_build_iso").mkdir()
        write_state("a1b2c3d4", atomic=atomic, **{**STATE, "status": "failed", "last_error": "tests failed"})
        message = await receive(ws)
        assert message == {
            "type": "adw_monitor_update",
            "channel": "adw-monitor",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": {
                "workflows": [
                    monitor_item(
                        "a1b2c3d4",
                        status="failed",
                        current_phase="build",
                        phase_progress=16.7,
                        phases_completed=["plan"],
                        last_error="tests failed",
                        is_process_active=False,
                    )
                ],
                "summary": {"total": 1, "running": 0, "completed": 0, "failed": 1, "paused": 0, "stalled": 0},
                "last_updated": ISO_TIME,
            },
        }


async def test_monitor_status_rules_and_order(start, write_state, workspace) -> None:
    write_state("done", status="completed", start_time="2026-11-25T09:00:00")
    write_state("fail", status="failed", start_time="2026-11-25T08:00:00")
    write_state("run-old", status="running", start_time="2026-11-24T08:00:00")
    write_state("run-new", status="running", start_time="2026-11-25T08:00:00")
    write_state("parked", start_time="2026-11-25T12:00:00")
    (workspace.trees / "parked").mkdir()
    write_state("waiting", start_time="2026-11-25T13:00:00")
    (workspace.agents / "no-state-yet").mkdir()  # a directory without a state file is not listed
    client = await start()
    async with client.ws_connect("/ws/adw-monitor") as ws:
        data = (await receive(ws))["data"]
    assert [(w["adw_id"], w["status"]) for w in data["workflows"]] == [
        ("run-new", "running"),
        ("run-old", "running"),
        ("parked", "paused"),
        ("fail", "failed"),
        ("done", "completed"),
        ("waiting", "queued"),
    ]
    assert data["summary"] == {"total": 6, "running": 2, "completed": 1, "failed": 1, "paused": 1, "stalled": 0}


async def test_worktree_appearing_later_makes_an_adw_paused(start, write_state, workspace) -> None:
    write_state("w1", issue_number=3)
    client = await start(adw__trees_poll_interval=0.05)
    async with client.ws_connect("/ws/adw-monitor") as ws:
        assert [w["status"] for w in (await receive(ws))["data"]["workflows"]] == ["queued"]
        (workspace.trees / "w1").mkdir()
        message = await receive(ws)
        assert (message["seq"], [w["status"] for w in message["data"]["workflows"]]) == (2, ["paused"])


async def test_identical_rewrite_sends_nothing(start, write_state) -> None:
    write_state("a1", **STATE)
    write_state("sentinel", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws/adw-state/a1") as ws, client.ws_connect("/ws/adw-state/sentinel") as sentinel:
        assert (await receive(ws))["seq"] == 1
        assert (await receive(sentinel))["seq"] == 1
        write_state("a1", **STATE)  # same content, new mtime
        write_state("a1", atomic=True, **STATE)
        write_state("sentinel", step=1)
        # Events arrive in order: once the sentinel's change is out, the rewrites were read.
        assert (await receive(sentinel))["data"] == {"adw_id": "sentinel", "step": 1}
        write_state("a1", **{**STATE, "status": "completed"})
        # Had a rewrite produced a message, it would come first, with seq 2 and the old data.
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", **STATE, "status": "completed"},
        }


async def test_a_burst_inside_one_window_gives_one_trailing_message_with_the_final_state(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=1.0)
    async with client.ws_connect("/ws/adw-state/a1") as ws:
        assert (await receive(ws))["data"] == {"adw_id": "a1", "step": 0}
        write_state("a1", step=1)
        leading = await receive(ws)  # the first change after a quiet period goes out at once
        assert (leading["seq"], leading["data"]) == (2, {"adw_id": "a1", "step": 1})
        for step in range(2, 12):
            write_state("a1", atomic=step % 2 == 0, step=step)
            # Pace the writes past the watcher's 20 ms grouping so each one is a separate
            # change that reaches the throttle, all well inside the 1 s window.
            await asyncio.sleep(0.03)
        trailing = await receive(ws)
        assert trailing["data"] == {"adw_id": "a1", "step": 11}
        assert trailing["seq"] >= leading["seq"] + 3  # intermediate changes were numbered, then coalesced
        write_state("a1", step=12)  # the next message must be this one: nothing else was queued
        after = await receive(ws)
        assert (after["data"], after["seq"]) == ({"adw_id": "a1", "step": 12}, trailing["seq"] + 1)


async def test_a_socket_only_sees_its_own_channel(start, write_state) -> None:
    write_state("a1", step=0)
    write_state("b2", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws/adw-state/a1") as a_ws, client.ws_connect("/ws/workflows") as wf:
        assert (await receive(a_ws))["data"] == {"adw_id": "a1", "step": 0}
        assert (await receive(wf))["data"] == []  # neither has an issue number yet
        write_state("b2", step=1, issue_number=5)  # changes b2's state and the workflows channel
        assert (await receive(wf))["data"] == [{"adw_id": "b2", "issue_number": 5, "phase": "plan", "github_url": ""}]
        write_state("a1", step=1)
        assert await receive(a_ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 1},
        }


async def test_unknown_adw_gets_empty_data_and_goes_live_when_its_file_appears(start, write_state) -> None:
    client = await start()
    async with client.ws_connect("/ws/adw-state/new-one") as ws:
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:new-one",
            "adw_id": "new-one",
            "seq": 0,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": {},
        }
        write_state("new-one", issue_number="9")
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:new-one",
            "adw_id": "new-one",
            "seq": 1,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "new-one", "issue_number": "9"},
        }


async def test_removed_adw_directory_empties_its_channels(start, write_state, workspace) -> None:
    write_state("gone", issue_number=4)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws/adw-state/gone") as ws, client.ws_connect("/ws/workflows") as wf:
        assert (await receive(ws))["seq"] == 1
        assert len((await receive(wf))["data"]) == 1
        shutil.rmtree(workspace.agents / "gone")
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:gone",
            "adw_id": "gone",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": {},
        }
        assert (await receive(wf))["data"] == []


async def test_torn_json_keeps_the_last_good_state(start, write_state, workspace) -> None:
    write_state("a1", step=0)
    write_state("sentinel", step=0)
    client = await start(broadcast__min_interval=0)
    health = client.app[ADW_FILES].health
    async with client.ws_connect("/ws/adw-state/a1") as ws, client.ws_connect("/ws/adw-state/sentinel") as sentinel:
        assert (await receive(ws))["data"] == {"adw_id": "a1", "step": 0}
        assert (await receive(sentinel))["seq"] == 1
        write_state("a1", raw=b'{"adw_id": "a1", "st')  # a writer caught mid-write
        write_state("sentinel", step=1)
        assert (await receive(sentinel))["seq"] == 2  # so the torn file has been read
        assert health.errors_total == 1
        assert list(health.broken) == ["a1"]
        assert health.broken["a1"].startswith(f"{workspace.agents / 'a1' / 'adw_state.json'}: invalid JSON (20 bytes)")
        write_state("a1", step=1)
        assert await receive(ws) == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "adw_id": "a1",
            "seq": 2,
            "timestamp": ISO_TIME,
            "data": {"adw_id": "a1", "step": 1},
        }
        assert (health.errors_total, health.broken) == (1, {})


async def test_agents_dir_created_after_start(start, write_state, workspace) -> None:
    workspace.agents.rmdir()
    client = await start()
    async with client.ws_connect("/ws/workflows") as ws:
        assert await receive(ws) == {
            "type": "workflows_update",
            "channel": "workflows",
            "seq": 0,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": [],
        }
        write_state("late", issue_number=1)  # creates agents/ too
        assert await receive(ws) == {
            "type": "workflows_update",
            "channel": "workflows",
            "seq": 1,
            "timestamp": ISO_TIME,
            "data": [{"adw_id": "late", "issue_number": 1, "phase": "plan", "github_url": ""}],
        }
