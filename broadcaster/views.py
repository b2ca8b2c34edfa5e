"""Channel payloads built from the sources' plain data (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sources.adw_files import PHASES, AdwRecord

from .channels import empty_summary
from .clock import now_iso

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


def issue_number(value: Any) -> int | None:
    """Return an issue number given as an int or a string of digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def github_url(state: Mapping[str, Any], number: int | None, github_repo: str) -> str | None:
    """Return the state's own github_url, else one built from ``github_repo``, else None."""
    own = state.get("github_url")
    if isinstance(own, str) and own:
        return own
    if github_repo and number is not None:
        return f"https://github.com/{github_repo}/issues/{number}"
    return None


def adw_state(adw_id: str, record: AdwRecord | None) -> dict[str, Any]:
    """Return ``{adw_id, ...state}``, or ``{}`` while there is no state file."""
    if record is None or record.state is None:
        return {}
    return {**record.state, "adw_id": adw_id}


def workflows(records: Iterable[AdwRecord], *, github_repo: str = "") -> list[dict[str, Any]]:
    """Return the WorkflowExecution list: ADWs with an integer issue number, newest first."""
    out = []
    for record in _newest_first(r for r in records if r.state is not None):
        state = record.state or {}
        number = issue_number(state.get("issue_number"))
        if number is None:
            continue
        out.append(
            {
                "adw_id": record.adw_id,
                "issue_number": number,
                "phase": record.phases[-1] if record.phases else "plan",
                "github_url": github_url(state, number, github_repo) or "",
            }
        )
    return out


def monitor(
    records: Iterable[AdwRecord],
    *,
    worktrees: frozenset[str] = frozenset(),
    queue_status: Mapping[str, str] | None = None,
    github_repo: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return ``{workflows, summary, last_updated}`` for every ADW with a state file."""
    queue_status = queue_status or {}
    items = [
        workflow_status(
            r,
            in_worktree=r.adw_id in worktrees,
            queue_status=queue_status.get(r.adw_id),
            github_repo=github_repo,
            now=now,
        )
        for r in _newest_first(r for r in records if r.state is not None)
    ]
    items.sort(key=lambda w: _SORT_RANK.get(w["status"], 4))  # stable: newest first within a status
    summary = empty_summary()
    summary["total"] = len(items)
    for item in items:
        if item["status"] in summary:
            summary[item["status"]] += 1
    return {"workflows": items, "summary": summary, "last_updated": now_iso()}


def workflow_status(
    record: AdwRecord,
    *,
    in_worktree: bool,
    queue_status: str | None,
    github_repo: str,
    now: datetime | None,
) -> dict[str, Any]:
    """Return one AdwWorkflowStatus."""
    state = record.state or {}
    status = (
        _STATE_STATUS.get(str(state.get("status") or "").lower())
        or _QUEUE_STATUS.get(str(queue_status or "").lower())
        or ("paused" if in_worktree else "queued")
    )
    current_phase = _text(state.get("current_phase")) or (record.phases[-1] if record.phases else None)
    if status == "completed":
        completed = list(record.phases)
        progress = 100.0
    else:
        completed = [p for p in record.phases if p != current_phase]
        in_progress = 0.5 if status == "running" and current_phase in PHASES else 0.0
        progress = min(100.0, round((len(completed) + in_progress) / len(PHASES) * 100, 1))
    number = issue_number(state.get("issue_number"))
    start, end = _text(state.get("start_time")), _text(state.get("end_time"))
    last_error = _text(state.get("last_error")) or record.error_log
    error_count = _int(state.get("error_count")) or (1 if record.error_log else 0)
    nl_input = state.get("nl_input")
    return {
        "adw_id": record.adw_id,
        "issue_number": number,
        "pr_number": _int(state.get("pr_number")),
        "issue_class": _text(state.get("issue_class")) or "",
        "title": nl_input[:100] if isinstance(nl_input, str) else "",
        "status": status,
        "current_phase": current_phase,
        "phase_progress": progress,
        "workflow_template": _text(state.get("workflow_template")) or "",
        "start_time": start,
        "end_time": end,
        "duration_seconds": _duration(start, end, now),
        "github_url": github_url(state, number, github_repo),
        "worktree_path": _text(state.get("worktree_path")),
        "current_cost": _float(state.get("current_cost")),
        "estimated_cost_total": _float(state.get("estimated_cost_total")),
        "error_count": error_count,
        "last_error": last_error,
        "is_process_active": status == "running",
        "phases_completed": completed,
        "total_phases": len(PHASES),
    }


def _newest_first(records: Iterable[AdwRecord]) -> list[AdwRecord]:
    ordered = sorted(records, key=lambda r: r.adw_id)
    ordered.sort(key=lambda r: _text((r.state or {}).get("start_time")) or "", reverse=True)
    return ordered


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration(start: str | None, end: str | None, now: datetime | None) -> float | None:
    """Seconds from start to end, or to now while unfinished (times without a zone are local)."""
    begin = _parse_time(start)
    if begin is None:
        return None
    finish = _parse_time(end)
    if finish is None:
        finish = now or datetime.now(begin.tzinfo)
    if (finish.tzinfo is None) != (begin.tzinfo is None):
        return None
    return round(max(0.0, (finish - begin).total_seconds()), 1)
