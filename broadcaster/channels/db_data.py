"""The database channels' payloads (queue, workflow-history) and history paging (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sources.database import QueueData
from sources.values import as_float

from .adw_data import parse_time

HISTORY_LIMIT = 50  # rows in the workflow-history channel; HTTP callers page through the rest


def empty_analytics() -> dict[str, Any]:
    """Return history analytics with every field the clients read, all zero."""
    return {
        "total_count": 0,
        "success_rate": 0.0,
        "average_duration": 0.0,
        "recent_failures": 0,
        "total_workflows": 0,
        "completed_workflows": 0,
        "failed_workflows": 0,
        "avg_duration_seconds": 0.0,
        "success_rate_percent": 0.0,
        "workflows_by_model": {},
        "workflows_by_template": {},
        "workflows_by_status": {},
        "avg_cost": 0.0,
        "total_cost": 0.0,
        "avg_cost_per_completion": 0.0,
        "cost_trend_7day": 0.0,
        "cost_trend_30day": 0.0,
        "avg_tokens": 0.0,
        "avg_cache_efficiency": 0.0,
    }


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
    finished_costs = _finished_costs(rows)
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
        **_trends(finished_costs, now),
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


def cost_trends(rows: list[dict[str, Any]], now: datetime) -> dict[str, float]:
    """Return the 7- and 30-day cost trends of ``rows`` as of ``now`` (the clock-derived analytics)."""
    return _trends(_finished_costs(rows), now)


def _finished_costs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    return [
        (r, c)
        for r in rows
        if r.get("status") in ("completed", "failed") and (c := as_float(r.get("actual_cost_total"))) and c > 0
    ]


def _trends(costs: list[tuple[dict[str, Any], float]], now: datetime) -> dict[str, float]:
    return {"cost_trend_7day": _trend(costs, now, days=7), "cost_trend_30day": _trend(costs, now, days=30)}


def _trend(costs: list[tuple[dict[str, Any], float]], now: datetime, *, days: int) -> float:
    """Percent change of the average cost of the last ``days`` against the ``days`` before."""
    recent: list[float] = []
    before: list[float] = []
    for row, cost in costs:
        created = parse_time(str(row.get("created_at") or ""))
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
