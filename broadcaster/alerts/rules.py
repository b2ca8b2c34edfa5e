"""The alert rules: which alerts should be open, from the data the channels already carry.

Pure functions over channel data (the ADW monitor, the queue, system status): each returns the
causes it sees, ``{alert id: Cause}``, where the id is ``rule:subject`` and so stable across
reads and restarts. Opening, resolving and delivering are the book's and the engine's work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sources.values import as_float

from ..channels.specs import ALERTS

# the status entry of the alerts themselves: never a cause of a service_error alert (no loop)
OWN_ENTRY = ALERTS.service


@dataclass(frozen=True, slots=True)
class Cause:
    """Why one alert is open: what it is about and how it is worded."""

    rule: str
    subject: str
    severity: str  # "error" | "warning"
    title: str
    text: str
    link: str
    adw_id: str | None = None
    github_url: str | None = None

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.subject}"


def adw_link(base: str, adw_id: str) -> str:
    """Return the dashboard's link to one ADW's detail."""
    return f"{base}#/adw/{quote(adw_id, safe='')}"


def adw_causes(monitor: Mapping[str, Any], on: Iterable[str], ratio: float, base: str) -> dict[str, Cause]:
    """Return the causes in the ADW monitor's items: failed, stalled, over budget."""
    rules = set(on)
    causes: dict[str, Cause] = {}
    for item in monitor.get("workflows") or []:
        if not isinstance(item, dict) or not isinstance(item.get("adw_id"), str):
            continue
        for cause in _item_causes(item, rules, ratio, base):
            causes[cause.id] = cause
    return causes


def _item_causes(item: dict[str, Any], rules: set[str], ratio: float, base: str) -> Iterable[Cause]:
    adw_id = item["adw_id"]
    name = _adw_name(item)
    common = {"subject": adw_id, "link": adw_link(base, adw_id), "adw_id": adw_id, "github_url": item.get("github_url")}
    if "adw_failed" in rules and item.get("status") == "failed":
        error = item.get("last_error") or "no error recorded"
        yield Cause("adw_failed", severity="error", title=f"{name} failed", text=f"{name}: {error}", **common)
    if "adw_stalled" in rules and item.get("stalled"):
        quiet = as_float(item.get("stalled_seconds"))
        since = f" for {int(quiet)} s" if quiet is not None else ""
        text = f"{name} says running, but no process of it is alive and its files have not moved{since}."
        yield Cause("adw_stalled", severity="warning", title=f"{name} stalled", text=text, **common)
    cost, estimate = as_float(item.get("current_cost")), as_float(item.get("estimated_cost_total"))
    if "adw_over_budget" in rules and cost is not None and estimate is not None and estimate > 0:
        if cost > ratio * estimate:
            text = f"{name} has cost ${cost:.2f}, {cost / estimate:.1f}x its estimate of ${estimate:.2f}."
            yield Cause("adw_over_budget", severity="warning", title=f"{name} over budget", text=text, **common)


def _adw_name(item: dict[str, Any]) -> str:
    number = item.get("issue_number")
    return f"ADW {item['adw_id']}" + (f" (issue #{number})" if isinstance(number, int) else "")


def queue_causes(queue: Mapping[str, Any], on: Iterable[str], base: str) -> dict[str, Cause]:
    """Return a cause for each queue phase that is blocked or failed."""
    if "queue_blocked" not in set(on):
        return {}
    causes: dict[str, Cause] = {}
    for phase in queue.get("phases") or []:
        if not isinstance(phase, dict) or phase.get("status") not in ("blocked", "failed"):
            continue
        queue_id = str(phase.get("queue_id"))
        adw_id = phase.get("adw_id") if isinstance(phase.get("adw_id"), str) else None
        title = f"Queue phase {phase.get('phase') or phase.get('phase_number')} {phase['status']}"
        why = phase.get("error_message") or "no error recorded"
        cause = Cause(
            "queue_blocked",
            queue_id,
            "warning",
            f"{title} (feature {phase.get('parent_issue')})",
            f"{title}: {why}",
            adw_link(base, adw_id) if adw_id else f"{base}#/",
            adw_id,
        )
        causes[cause.id] = cause
    return causes


def errors_since(status: Mapping[str, Any], since: Mapping[str, float], now: float) -> dict[str, float]:
    """Return, for each system-status entry in ``error`` now, since when it has been (``since`` carried on)."""
    services = status.get("services") or {}
    return {
        name: since.get(name, now)
        for name, entry in services.items()
        if name != OWN_ENTRY and isinstance(entry, dict) and entry.get("status") == "error"
    }


def service_causes(
    status: Mapping[str, Any], since: Mapping[str, float], now: float, after: float, on: Iterable[str], base: str
) -> dict[str, Cause]:
    """Return a cause for each status entry that has been ``error`` for ``after`` seconds or longer."""
    if "service_error" not in set(on):
        return {}
    services = status.get("services") or {}
    causes = {}
    for name, start in since.items():
        if now - start < after:
            continue
        entry = services.get(name) or {}
        message = entry.get("message") or entry.get("status") or "error"
        cause = Cause("service_error", name, "error", f"{name} is failing", f"{name}: {message}", f"{base}#/")
        causes[cause.id] = cause
    return causes
