"""System status: one entry per source and configured check, each with how long it has been so."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.clock import iso_utc

LEVELS = ("healthy", "degraded", "error", "unknown")  # unknown: configured, its first check not answered yet


@dataclass(slots=True)
class _Service:
    status: str
    message: str
    details: dict[str, Any]
    since: float


@dataclass
class SystemStatus:
    """Track each service's status and when it last changed; report the channel's shape."""

    clock: Callable[[], float] = time.time
    _services: dict[str, _Service] = field(default_factory=dict)

    def set(self, name: str, status: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        """Record ``name``'s current status; its uptime restarts when the status changes."""
        if status not in LEVELS:
            raise ValueError(f"status must be one of {LEVELS}, got {status!r}")
        old = self._services.get(name)
        since = old.since if old is not None and old.status == status else self.clock()
        self._services[name] = _Service(status, message, dict(details or {}), since)

    def report(self) -> dict[str, Any]:
        """Return ``{overall_status, timestamp, services, summary}``."""
        now = self.clock()
        services = {}
        for name, s in self._services.items():
            services[name] = {
                "name": name,
                "status": s.status,
                **_uptime(s, now),
                "message": s.message,
                "details": s.details,
            }
        statuses = [s["status"] for s in services.values()]
        return {
            "overall_status": overall(statuses),
            "timestamp": iso_utc(now),
            "services": services,
            "summary": summary_of(statuses),
        }

    def refreshed(self, data: Any) -> Any:
        """Return a report (``data``) with its timestamp and uptimes as of now; nothing else changes."""
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            return data
        now = self.clock()
        services = {}
        for name, entry in data["services"].items():
            s = self._services.get(name)
            if isinstance(entry, dict) and s is not None and entry.get("status") == s.status:
                entry = {**entry, **_uptime(s, now)}
            services[name] = entry
        return {**data, "services": services, "timestamp": iso_utc(now)}


def overall(statuses: list[str]) -> str:
    """Return the overall status: error, else degraded, else unknown if any is so (or there are none), else healthy."""
    for level in ("error", "degraded", "unknown"):
        if level in statuses:
            return level
    return "healthy" if statuses else "unknown"  # never healthy with zero services


def summary_of(statuses: list[str]) -> dict[str, Any]:
    """Return ``{healthy_services, total_services, health_percentage}`` of services' statuses."""
    healthy = statuses.count("healthy")
    return {
        "healthy_services": healthy,
        "total_services": len(statuses),
        "health_percentage": round(healthy / len(statuses) * 100, 1) if statuses else 0.0,
    }


def _uptime(s: _Service, now: float) -> dict[str, Any]:
    return uptime(s.status, now - s.since)


def uptime(status: str, held: float) -> dict[str, Any]:
    """Return the uptime fields of a service that has had ``status`` for ``held`` seconds."""
    held = max(0.0, held)
    if status == "healthy":
        return {"uptime_seconds": round(held, 1), "uptime_human": human(held)}
    return {"uptime_seconds": 0.0, "uptime_human": f"{status} for {human(held)}"}


def human(seconds: float) -> str:
    """Format a duration as ``2d 3h``, ``4h 5m``, ``6m 7s`` or ``8s``."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"
