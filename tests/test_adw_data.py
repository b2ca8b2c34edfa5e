"""Channel payloads from records: the rules of docs/protocol.md that the end-to-end tests do not pin."""

from __future__ import annotations

from datetime import datetime

from broadcaster.channels import adw_data
from sources.adw_read import AdwRecord


def test_issue_numbers() -> None:
    assert [adw_data.issue_number(v) for v in ("83", 83, " 7 ", "x83", None, True, 8.0)] == [
        83,
        83,
        7,
        None,
        None,
        None,
        None,
    ]


def test_status_comes_from_the_state_then_the_queue_then_the_worktree() -> None:
    def status(state_status: str | None, queue: str | None, worktree: bool) -> str:
        record = AdwRecord("a", {"status": state_status} if state_status else {})
        item = adw_data.workflow_status(record, in_worktree=worktree, queue_status=queue, github_repo="", now=None)
        return str(item["status"])

    assert status("completed", "running", True) == "completed"
    assert status("pending", None, True) == "queued"
    assert status(None, "running", True) == "running"
    assert status(None, "blocked", False) == "paused"
    assert status(None, "ready", True) == "queued"
    assert status("weird", None, True) == "paused"
    assert status(None, None, False) == "queued"


def test_progress_and_running_duration() -> None:
    record = AdwRecord(
        "a",
        {"status": "running", "start_time": "2026-11-25T10:00:00", "current_phase": "test"},
        ("plan", "build", "test"),
    )
    item = adw_data.workflow_status(
        record, in_worktree=False, queue_status=None, github_repo="", now=datetime(2026, 11, 25, 10, 2, 30)
    )
    assert (item["phases_completed"], item["phase_progress"], item["duration_seconds"]) == (
        ["plan", "build"],
        41.7,
        150.0,
    )
    done = AdwRecord("b", {"status": "completed"}, ("plan", "build"))
    item = adw_data.workflow_status(done, in_worktree=False, queue_status=None, github_repo="", now=None)
    assert (item["phases_completed"], item["phase_progress"], item["current_phase"]) == (
        ["plan", "build"],
        100.0,
        "build",
    )


def test_adw_state_keeps_every_field_and_the_directory_id_wins() -> None:
    record = AdwRecord("dir-id", {"adw_id": "other", "extra": {"nested": [1]}})
    assert adw_data.adw_state("dir-id", record) == {"adw_id": "dir-id", "extra": {"nested": [1]}}
    assert adw_data.adw_state("dir-id", None) == {}
