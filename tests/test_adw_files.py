"""The ADW files source on its own: what it yields as directories come, change and go."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from sources.adw_files import AdwFiles, ShallowFilter
from sources.adw_read import AdwRecord


async def next_change(changes, timeout: float = 5.0) -> set[str]:
    return await asyncio.wait_for(anext(changes), timeout)


async def test_initial_scan_then_changes_then_the_directory_going_and_coming_back(workspace, write_state) -> None:
    write_state("a1", issue_number=1)
    (workspace.agents / "a1" / "adw_plan_iso").mkdir()
    (workspace.agents / "a1" / "adw_test_iso").mkdir()
    (workspace.agents / "a1" / "error.log").write_text("first problem\n\nTraceback: boom   \n\n")
    (workspace.agents / "port_allocations.json").write_text("{}")
    source = AdwFiles(workspace.agents, workspace.trees, appear_poll_interval=0.05)
    changes = source.changes()
    try:
        assert await next_change(changes) == {"a1"}
        a1 = workspace.agents / "a1"
        activity = max(
            int(p.stat().st_mtime)
            for p in (a1 / "adw_state.json", a1 / "adw_plan_iso", a1 / "adw_test_iso", a1 / "error.log")
        )
        assert source.records == {
            "a1": AdwRecord(
                "a1", {"adw_id": "a1", "issue_number": 1}, ("plan", "test"), "Traceback: boom", activity=activity
            ),
        }
        assert source.health.watching is True
        write_state("b2", issue_number=2)  # written before the consumer asks again: must not be missed
        assert await next_change(changes) == {"b2"}

        shutil.rmtree(workspace.agents)
        assert await next_change(changes) == {"a1", "b2"}
        assert source.records == {}
        assert source.health.message == f"waiting for {workspace.agents} to exist"

        write_state("c3", issue_number=3)
        assert await next_change(changes) == {"c3"}
        assert list(source.records) == ["c3"]
    finally:
        await changes.aclose()


async def test_first_yield_is_immediate_when_the_directory_is_missing(tmp_path: Path) -> None:
    source = AdwFiles(tmp_path / "agents", tmp_path / "trees")
    changes = source.changes()
    try:
        assert await next_change(changes, timeout=2) == set()
        assert source.health.message == f"waiting for {tmp_path / 'agents'} to exist"
    finally:
        await changes.aclose()


async def test_a_file_that_is_not_json_is_counted_once_per_streak(workspace, write_state) -> None:
    write_state("a1", raw=b"[1, 2]")
    source = AdwFiles(workspace.agents, workspace.trees, retry_delay=0.05)
    changes = source.changes()
    try:
        assert await next_change(changes) == {"a1"}
        a1 = source.records["a1"]
        assert (a1.state, a1.error) == (None, "expected a JSON object, got list")
        assert source.health.errors_total == 1
        write_state("a1", raw=b"{not json")
        write_state("other", step=1)
        seen: set[str] = set()
        while "other" not in seen:
            seen |= await next_change(changes)
        assert source.records["a1"].error is not None and source.records["a1"].error.startswith("invalid JSON")
        assert source.health.errors_total == 1  # still the same broken streak
        write_state("a1", step=2)
        assert await next_change(changes) == {"a1"}
        assert source.records["a1"].state == {"adw_id": "a1", "step": 2}
        assert source.health.broken == {}
    finally:
        await changes.aclose()


def test_the_filter_passes_only_what_can_change_a_record(tmp_path: Path) -> None:
    root = str(tmp_path / "agents")
    keep = ShallowFilter(root)
    assert keep(None, root)  # type: ignore[arg-type]
    assert keep(None, f"{root}/a1")  # type: ignore[arg-type]
    assert keep(None, f"{root}/a1/adw_state.json")  # type: ignore[arg-type]
    assert keep(None, f"{root}/a1/adw_build_iso")  # type: ignore[arg-type]
    assert keep(None, f"{root}/a1/adw_build_iso/agent.log")  # type: ignore[arg-type]  # activity
    assert not keep(None, f"{root}/a1/notes/agent.log")  # type: ignore[arg-type]
    assert not keep(None, f"{root}/a1/adw_build_iso/deeper/x")  # type: ignore[arg-type]
    assert not keep(None, f"{root}-other/a1")  # type: ignore[arg-type]
