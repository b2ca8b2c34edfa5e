"""The ADW channels' payloads (adw-state, workflows, adw-monitor) from the sources' plain data.

Pure functions, no I/O; the database channels' are in ``db_data``, the polled services' in
``service_data``.

The sources hand over cleaned values (see ``sources.values``), but any JSON can sit where a
number or a string belongs: every field is read with a converter that says "none" instead of
raising, and an item that still cannot be built is shown with a ``problem`` note instead of
costing its channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sources.adw_read import PHASES, AdwRecord
from sources.processes import MAX_PIDS
from sources.values import as_float, as_int

from ..core.clock import iso_utc, now_iso

MONITOR_STATUSES = ("running", "completed", "failed", "paused", "queued")
# The state file's own words, then a phase_queue row's, in the monitor's vocabulary.
_STATE_STATUS = {
    "running": "running",
    "completed": "completed",
    "failed": "failed",
    "paused": "paused",
    "queued": "queued",
    "pending": "queued",
}
_QUEUE_STATUS = {
    "queued": "queued",
    "ready": "queued",
    "running": "running",
    "completed": "completed",
    "blocked": "paused",
    "failed": "failed",
}
_SORT_RANK = {"running": 0, "paused": 1, "failed": 2, "completed": 3}
logger = logging.getLogger(__name__)


def empty_summary() -> dict[str, int]:
    """Return the ADW monitor summary with every count zero (``stalled`` ones are ``paused`` too)."""
    return {"total": 0, "running": 0, "completed": 0, "failed": 0, "paused": 0, "stalled": 0}


def issue_number(value: Any) -> int | None:
    """Return an issue number given as an int or a string of ASCII digits (at most 18), else None."""
    if isinstance(value, str) and not value.strip().isdigit():
        return None  # "-3", "+3", " 3.0" are not issue numbers
    return as_int(value) if not isinstance(value, float) else None


def guarded(
    build: Callable[[], dict[str, Any]], fallback: Callable[[str], dict[str, Any]], what: str
) -> dict[str, Any]:
    """Return ``build()``; if it raises, log it and return ``fallback(problem)``: the item, not its channel, pays."""
    try:
        return build()
    except Exception as exc:
        logger.warning("%s could not be shown: %r", what, exc, exc_info=True)
        return fallback(f"could not be shown: {type(exc).__name__}")


def github_url(state: Mapping[str, Any], number: int | None, github_repo: str) -> str | None:
    """Return the state's own github_url, else one built from ``github_repo``, else None."""
    own = state.get("github_url")
    if isinstance(own, str) and own:
        return own
    if github_repo and number is not None:
        return f"https://github.com/{github_repo}/issues/{number}"
    return None


def adw_state(adw_id: str, record: AdwRecord | None) -> dict[str, Any]:
    """Return ``{adw_id, ...state}``, or ``{}`` while there is no state file.

    A state that has a ``current_phase`` gets the phase of the one rule there (``phase_of``), so
    that no two channels disagree on an ADW's phase.
    """
    if record is None or record.state is None:
        return {}
    if "current_phase" in record.state:
        return {**record.state, "adw_id": adw_id, "current_phase": phase_of(record)}
    return {**record.state, "adw_id": adw_id}


def phase_of(record: AdwRecord) -> str:
    """Return an ADW's phase, the same in every channel: the state's ``current_phase`` when it names a
    phase, else the last phase directory that exists, else ``plan``."""
    named = (record.state or {}).get("current_phase")
    if isinstance(named, str) and named in PHASES:
        return named
    return record.phases[-1] if record.phases else "plan"


def status_of(record: AdwRecord, *, scanning: bool, queue_status: str | None, in_worktree: bool) -> tuple[str, bool]:
    """Return an ADW's monitor status and whether it is stalled (docs/protocol.md, "adw-monitor").

    ``scanning``: processes are looked at (else the state file's word decides, as it always did).
    """
    said = str((record.state or {}).get("status") or "").lower()
    own = _STATE_STATUS.get(said)
    if own in ("completed", "failed"):
        return own, False
    if scanning:
        if record.pids:
            return "running", False
        if said in ("running", "") and not record.quiet:
            return "running", False
        if said == "running":  # says running: no process, no activity within stall_after
            return "paused", True
    if own is not None:
        return own, False
    return _QUEUE_STATUS.get(str(queue_status or "").lower()) or ("paused" if in_worktree else "queued"), False


def workflows(records: Iterable[AdwRecord], *, github_repo: str = "") -> list[dict[str, Any]]:
    """Return the WorkflowExecution list: ADWs with an integer issue number, newest first."""
    items = (workflow_execution(r, github_repo=github_repo) for r in _newest_first(r for r in records if r.state))
    return [item for item in items if item is not None]


def workflow_execution(record: AdwRecord, *, github_repo: str = "") -> dict[str, Any] | None:
    """Return one WorkflowExecution, or None for an ADW without an integer issue number."""
    state = record.state or {}
    number = issue_number(state.get("issue_number"))
    if number is None:
        return None
    return {
        "adw_id": record.adw_id,
        "issue_number": number,
        "phase": phase_of(record),
        "github_url": github_url(state, number, github_repo) or "",
    }


def sort_rank(status: str) -> int:
    """Return where a monitor status sorts: running, paused, failed, completed, then the rest."""
    return _SORT_RANK.get(status, 4)


def monitor_item(
    record: AdwRecord,
    *,
    in_worktree: bool,
    queue_status: str | None,
    github_repo: str,
    now: datetime | None,
    scanning: bool = False,
) -> dict[str, Any]:
    """Return one AdwWorkflowStatus; one that cannot be built is shown with a ``problem`` note."""

    def build() -> dict[str, Any]:
        return workflow_status(
            record,
            in_worktree=in_worktree,
            queue_status=queue_status,
            github_repo=github_repo,
            now=now,
            scanning=scanning,
        )

    def fallback(problem: str) -> dict[str, Any]:
        empty = AdwRecord(record.adw_id, {})
        item = workflow_status(empty, in_worktree=False, queue_status=None, github_repo="", now=None)
        return {**item, "problem": problem}

    return guarded(build, fallback, f"ADW {record.adw_id}")


def monitor(
    records: Iterable[AdwRecord],
    *,
    worktrees: frozenset[str] = frozenset(),
    queue_status: Mapping[str, str] | None = None,
    github_repo: str = "",
    now: datetime | None = None,
    scanning: bool = False,
) -> dict[str, Any]:
    """Return ``{workflows, summary, last_updated}`` for every ADW with a state file."""
    queue_status = queue_status or {}
    items = [
        monitor_item(
            r,
            in_worktree=r.adw_id in worktrees,
            queue_status=queue_status.get(r.adw_id),
            github_repo=github_repo,
            now=now,
            scanning=scanning,
        )
        for r in _newest_first(r for r in records if r.state is not None)
    ]
    items.sort(key=lambda w: sort_rank(w["status"]))  # stable: newest first within a status
    summary = empty_summary()
    summary["total"] = len(items)
    for item in items:
        if item["status"] in summary:
            summary[item["status"]] += 1
        summary["stalled"] += bool(item["stalled"])
    return {"workflows": items, "summary": summary, "last_updated": now_iso()}


def workflow_status(
    record: AdwRecord,
    *,
    in_worktree: bool,
    queue_status: str | None,
    github_repo: str,
    now: datetime | None,
    scanning: bool = False,
) -> dict[str, Any]:
    """Return one AdwWorkflowStatus."""
    state = record.state or {}
    status, stalled = status_of(record, scanning=scanning, queue_status=queue_status, in_worktree=in_worktree)
    current_phase = phase_of(record)
    if status == "completed":
        completed = list(record.phases)
        progress = 100.0
    else:
        completed = [p for p in record.phases if p != current_phase]
        in_progress = 0.5 if status == "running" and current_phase in PHASES else 0.0
        progress = min(100.0, round((len(completed) + in_progress) / len(PHASES) * 100, 1))
    number = issue_number(state.get("issue_number"))
    start, end = text(state.get("start_time")), text(state.get("end_time"))
    last_error = text(state.get("last_error")) or record.error_log
    error_count = as_int(state.get("error_count")) or (1 if record.error_log else 0)
    nl_input = state.get("nl_input")
    return {
        "adw_id": record.adw_id,
        "issue_number": number,
        "pr_number": as_int(state.get("pr_number")),
        "issue_class": text(state.get("issue_class")) or "",
        "title": nl_input[:100] if isinstance(nl_input, str) else "",
        "status": status,
        "current_phase": current_phase,
        "phase_progress": progress,
        "workflow_template": text(state.get("workflow_template")) or "",
        "start_time": start,
        "end_time": end,
        "duration_seconds": duration(start, end, now),
        "github_url": github_url(state, number, github_repo),
        "worktree_path": text(state.get("worktree_path")),
        "current_cost": as_float(state.get("current_cost")),
        "estimated_cost_total": as_float(state.get("estimated_cost_total")),
        "error_count": error_count,
        "last_error": last_error,
        "is_process_active": bool(record.pids) if scanning else status == "running",
        "pids": list(record.pids[:MAX_PIDS]),
        "last_activity": None if record.activity is None else iso_utc(record.activity),
        "stalled": stalled,
        "stalled_seconds": quiet_for(record.activity, now) if stalled else None,
        "phases_completed": completed,
        "total_phases": len(PHASES),
    }


def quiet_for(activity: float | None, now: datetime | None) -> float | None:
    """Seconds since ``activity`` (epoch seconds), as of ``now`` (None: the clock)."""
    if activity is None:
        return None
    at = time.time() if now is None else now.timestamp()
    return round(max(0.0, at - activity), 1)


def _newest_first(records: Iterable[AdwRecord]) -> list[AdwRecord]:
    ordered = sorted(records, key=lambda r: r.adw_id)
    ordered.sort(key=lambda r: text((r.state or {}).get("start_time")) or "", reverse=True)
    return ordered


def text(value: Any) -> str | None:
    """Return ``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def parse_time(text: str | None) -> datetime | None:
    """Return an ISO time (``Z`` allowed, no zone allowed) as a datetime, or None."""
    if text is None or len(text) > 64:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(start: str | None, end: str | None, now: datetime | None) -> float | None:
    """Seconds from start to end, or to now while unfinished (times without a zone are local)."""
    begin = parse_time(start)
    if begin is None:
        return None
    finish = parse_time(end)
    if finish is None:
        finish = now or datetime.now(begin.tzinfo)
    if (finish.tzinfo is None) != (begin.tzinfo is None):
        return None
    try:
        return round(max(0.0, (finish - begin).total_seconds()), 1)
    except OverflowError:
        return None
