"""Channel payloads built from the sources' plain data (pure functions, no I/O).

The sources hand over cleaned values (see ``sources.values``), but any JSON can sit where a
number or a string belongs: every field is read with a converter that says "none" instead of
raising, and an item that still cannot be built is shown with a ``problem`` note instead of
costing its channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from sources.adw_files import PHASES, AdwRecord
from sources.database import QueueData
from sources.http import Reply
from sources.values import Cleaner, as_float, as_int

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
logger = logging.getLogger(__name__)


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
    """Return ``{adw_id, ...state}``, or ``{}`` while there is no state file."""
    if record is None or record.state is None:
        return {}
    return {**record.state, "adw_id": adw_id}


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
        "phase": record.phases[-1] if record.phases else "plan",
        "github_url": github_url(state, number, github_repo) or "",
    }


def sort_rank(status: str) -> int:
    """Return where a monitor status sorts: running, paused, failed, completed, then the rest."""
    return _SORT_RANK.get(status, 4)


def monitor_item(
    record: AdwRecord, *, in_worktree: bool, queue_status: str | None, github_repo: str, now: datetime | None
) -> dict[str, Any]:
    """Return one AdwWorkflowStatus; one that cannot be built is shown with a ``problem`` note."""

    def build() -> dict[str, Any]:
        return workflow_status(
            record, in_worktree=in_worktree, queue_status=queue_status, github_repo=github_repo, now=now
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
        )
        for r in _newest_first(r for r in records if r.state is not None)
    ]
    items.sort(key=lambda w: sort_rank(w["status"]))  # stable: newest first within a status
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
    current_phase = text(state.get("current_phase")) or (record.phases[-1] if record.phases else None)
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
        "duration_seconds": _duration(start, end, now),
        "github_url": github_url(state, number, github_repo),
        "worktree_path": text(state.get("worktree_path")),
        "current_cost": as_float(state.get("current_cost")),
        "estimated_cost_total": as_float(state.get("estimated_cost_total")),
        "error_count": error_count,
        "last_error": last_error,
        "is_process_active": status == "running",
        "phases_completed": completed,
        "total_phases": len(PHASES),
    }


def _newest_first(records: Iterable[AdwRecord]) -> list[AdwRecord]:
    ordered = sorted(records, key=lambda r: r.adw_id)
    ordered.sort(key=lambda r: text((r.state or {}).get("start_time")) or "", reverse=True)
    return ordered


def text(value: Any) -> str | None:
    """Return ``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _parse_time(text: str | None) -> datetime | None:
    if text is None or len(text) > 64:
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
    try:
        return round(max(0.0, (finish - begin).total_seconds()), 1)
    except OverflowError:
        return None


# --- database channels -------------------------------------------------------------------------

HISTORY_LIMIT = 50  # rows in the workflow-history channel; HTTP callers page through the rest


def queue(data: QueueData) -> dict[str, Any]:
    """Return ``{phases, total, paused}``."""
    return {"phases": data.phases, "total": len(data.phases), "paused": data.paused}


def queue_status_by_adw(phases: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Return each adw_id's queue status: its running row if any, else its latest phase's."""
    out: dict[str, str] = {}
    for phase in phases:  # ordered by parent issue and phase number: later rows win
        adw_id, status = phase.get("adw_id"), phase.get("status")
        if isinstance(adw_id, str) and adw_id and isinstance(status, str) and out.get(adw_id) != "running":
            out[adw_id] = status
    return out


def history(rows: list[dict[str, Any]], *, now: datetime | None = None) -> dict[str, Any]:
    """Return ``{workflows, total_count, analytics}``: the newest rows and analytics over all."""
    return {"workflows": rows[:HISTORY_LIMIT], "total_count": len(rows), "analytics": analytics(rows, now=now)}


def analytics(rows: list[dict[str, Any]], *, now: datetime | None = None) -> dict[str, Any]:
    """Return history analytics with both name sets; every number present and never null."""
    total = len(rows)
    by_status = _count(rows, "status")
    completed, failed = by_status.get("completed", 0), by_status.get("failed", 0)
    success = round(completed / total * 100, 1) if total else 0.0
    durations = [d for r in rows if r.get("status") == "completed" and (d := as_float(r.get("duration_seconds")))]
    costs = [c for r in rows if (c := as_float(r.get("actual_cost_total"))) and c > 0]
    finished_costs = [
        (r, c)
        for r in rows
        if r.get("status") in ("completed", "failed") and (c := as_float(r.get("actual_cost_total"))) and c > 0
    ]
    tokens = [(r, t) for r in rows if (t := as_float(r.get("total_tokens"))) and t > 0]
    cache = [e for r, _ in tokens if (e := as_float(r.get("cache_efficiency_percent"))) is not None]
    avg_duration = _mean(durations)
    now = now or datetime.now(UTC)
    return {
        "total_count": total,
        "success_rate": success,
        "average_duration": avg_duration,
        "recent_failures": sum(1 for r in rows[:HISTORY_LIMIT] if r.get("status") == "failed"),
        "total_workflows": total,
        "completed_workflows": completed,
        "failed_workflows": failed,
        "avg_duration_seconds": avg_duration,
        "success_rate_percent": success,
        "workflows_by_model": _count(rows, "model_used"),
        "workflows_by_template": _count(rows, "workflow_template"),
        "workflows_by_status": by_status,
        "avg_cost": _mean(costs, 4),
        "total_cost": round(sum(costs), 4),
        "avg_cost_per_completion": _mean([c for _, c in finished_costs], 4),
        "cost_trend_7day": _trend(finished_costs, now, days=7),
        "cost_trend_30day": _trend(finished_costs, now, days=30),
        "avg_tokens": _mean([t for _, t in tokens]),
        "avg_cache_efficiency": _mean(cache),
    }


HISTORY_FILTERS = {"status": "status", "model": "model_used", "template": "workflow_template"}
SEARCH_COLUMNS = ("adw_id", "nl_input", "issue_number", "github_url", "workflow_template", "model_used")


def filter_history(
    rows: list[dict[str, Any]],
    *,
    limit: int = HISTORY_LIMIT,
    offset: int = 0,
    filters: Mapping[str, str] | None = None,
    search: str = "",
    sort_by: str = "",
    descending: bool = True,
    now: datetime | None = None,
    over_all: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return one page of history rows matching ``filters``/``search``, with analytics over all rows.

    ``over_all``: those analytics if the caller has them (the channel's), so a request does not
    compute them again over every row.
    """
    picked = rows
    for param, value in (filters or {}).items():
        column = HISTORY_FILTERS[param]
        picked = [r for r in picked if str(r.get(column) or "") == value]
    if search:
        needle = search.lower()
        picked = [r for r in picked if any(needle in str(r.get(c) or "").lower() for c in SEARCH_COLUMNS)]
    if sort_by:
        present = [r for r in picked if r.get(sort_by) is not None]
        missing = [r for r in picked if r.get(sort_by) is None]
        present.sort(key=lambda r: _sortable(r[sort_by]), reverse=descending)
        picked = present + missing
    elif not descending:
        picked = picked[::-1]
    return {
        "workflows": picked[offset : offset + limit],
        "total_count": len(picked),
        "analytics": over_all if over_all is not None else analytics(rows, now=now),
    }


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _count(rows: Iterable[Mapping[str, Any]], column: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        value = row.get(column)
        if value is not None and value != "":
            out[str(value)] = out.get(str(value), 0) + 1
    return dict(sorted(out.items()))


def _mean(values: list[float], digits: int = 1) -> float:
    return round(sum(values) / len(values), digits) if values else 0.0


def _trend(costs: list[tuple[dict[str, Any], float]], now: datetime, *, days: int) -> float:
    """Percent change of the average cost of the last ``days`` against the ``days`` before."""
    recent: list[float] = []
    before: list[float] = []
    for row, cost in costs:
        created = _parse_time(str(row.get("created_at") or ""))
        if created is None:
            continue
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)  # SQLite CURRENT_TIMESTAMP is UTC
        age = (now - created).total_seconds() / 86400
        if 0 <= age < days:
            recent.append(cost)
        elif days <= age < 2 * days:
            before.append(cost)
    if not before or not recent:
        return 0.0
    previous = sum(before) / len(before)
    return round((sum(recent) / len(recent) - previous) / previous * 100, 1)


# --- service channels --------------------------------------------------------------------------


def webhook_status(reply: Reply, cleaner: Cleaner) -> dict[str, Any]:
    """Return the webhook service's own JSON (cleaned), or ``{status: "error", message}`` when it has none."""
    problem = reply.problem()
    if problem is None:
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            problem = "the webhook service did not answer with JSON"
        else:
            if isinstance(data, dict):
                cleaned: dict[str, Any] = cleaner.clean(data)
                return cleaned
            problem = f"the webhook service answered a JSON {type(data).__name__}, not an object"
    return {"status": "error", "message": problem}


_ROUTE_METHODS = ("get", "post", "put", "patch", "delete")


def openapi_routes(document: Any) -> list[dict[str, Any]]:
    """Return the Routes of an OpenAPI document (one per method; HEAD and OPTIONS left out)."""
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        raise ValueError("not an OpenAPI document: no 'paths' object")
    routes = []
    for path, operations in paths.items():
        if not isinstance(operations, dict):
            continue
        for method in _ROUTE_METHODS:
            op = operations.get(method)
            if not isinstance(op, dict):
                continue
            name = str(op.get("operationId") or op.get("summary") or f"{method.upper()} {path}")
            tags = op.get("tags")
            routes.append(
                route(
                    path,
                    method.upper(),
                    name,
                    str(op.get("summary") or ""),
                    str(op.get("description") or ""),
                    tags if isinstance(tags, list) else [],
                )
            )
    return routes


def route(path: str, method: str, name: str, summary: str, description: str, tags: list[Any]) -> dict[str, Any]:
    """Return one Route; ``handler`` repeats ``name`` for clients that read that key."""
    return {
        "path": path,
        "method": method,
        "name": name,
        "handler": name,
        "summary": summary,
        "description": description,
        "tags": [str(t) for t in tags],
    }


def merge_routes(*groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the routes of all groups, the first one of a (method, path) pair kept, sorted."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for group in groups:
        for r in group:
            seen.setdefault((r["path"], r["method"]), r)
    return [seen[key] for key in sorted(seen)]
