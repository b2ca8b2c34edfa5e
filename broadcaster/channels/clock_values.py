"""Clock values true when read: a channel's current data with its clock-derived fields computed now.

Digests leave clock-derived fields out (docs/protocol.md, "Refreshes and heartbeats"), so time
passing is never a change and never logged. What a client reads must still be true when it
reads it: every HTTP answer, every connection's first frame and every refresh (``Hub.refresh``)
carry the data of the channel's current event with these fields recomputed:

- ``system-status``: ``timestamp`` and each service's uptime (from when its status last changed);
- ``adw-monitor``: ``last_updated`` and the ``duration_seconds`` of every unfinished ADW;
- ``workflow-history``: the 7- and 30-day cost trends (relative to now).

Nothing else of the data changes, so a fresh answer never shows a state the channel's ``seq``
does not stand for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from ..core.clock import now_iso
from . import adw_data
from .db_data import cost_trends
from .status import SystemStatus


class ClockValues:
    """Recompute the clock-derived fields of a channel's data (see the module docstring)."""

    def __init__(self, status: SystemStatus, history_rows: Callable[[], list[dict[str, Any]]]) -> None:
        self._status = status
        self._history_rows = history_rows
        self._services: Callable[[Any], Any] | None = None

    def also_services(self, refreshed: Callable[[Any], Any]) -> None:
        """Pass system-status data through ``refreshed`` too (a cluster view: the uptimes of its nodes' services)."""
        self._services = refreshed

    def __call__(self, channel: str, data: Any) -> Any:
        """Return ``data`` of ``channel`` with its clock-derived fields as of now."""
        family = channel.partition(":")[0]
        if family == "system-status":
            data = self._status.refreshed(data)
            return data if self._services is None else self._services(data)
        if family == "adw-monitor":
            return monitor(data)
        if family == "workflow-history":
            return history(data, self._history_rows())
        return data


def monitor(data: Any) -> Any:
    """Return monitor data with ``last_updated`` and unfinished ADWs' durations as of now."""
    if not isinstance(data, dict) or not isinstance(data.get("workflows"), list):
        return data
    items = data["workflows"]
    opens = getattr(items, "opens", None)  # adw_index knows each item's start while unfinished
    if opens is None:
        opens = [_open_start(item) for item in items]
    fresh = list(items)
    for i, start in enumerate(opens):
        if start is not None:
            item = items[i]
            decoded = orjson.loads(orjson.dumps(item)) if isinstance(item, orjson.Fragment) else dict(item)
            decoded["duration_seconds"] = adw_data.duration(start, None, None)
            fresh[i] = decoded
    return {**data, "workflows": fresh, "last_updated": now_iso()}


def _open_start(item: Any) -> str | None:
    if isinstance(item, dict) and item.get("end_time") is None:
        return adw_data.text(item.get("start_time"))
    return None


def history(data: Any, rows: list[dict[str, Any]]) -> Any:
    """Return history data with the cost trends as of now."""
    if not isinstance(data, dict) or not isinstance(data.get("analytics"), dict):
        return data
    return {**data, "analytics": {**data["analytics"], **cost_trends(rows, datetime.now(UTC))}}
