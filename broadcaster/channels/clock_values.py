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
from .adw_index import Clocks
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
    """Return monitor data with ``last_updated``, unfinished ADWs' durations and stalled ones' quiet time as of now."""
    if not isinstance(data, dict) or not isinstance(data.get("workflows"), list):
        return data
    items = data["workflows"]
    clocks = getattr(items, "clocks", None)  # adw_index knows what each item's clock fields come from
    if clocks is None:
        clocks = [_clocks(item) for item in items]
    fresh = list(items)
    for i, clock in enumerate(clocks):
        if clock is not None:
            item = items[i]
            decoded = orjson.loads(orjson.dumps(item)) if isinstance(item, orjson.Fragment) else dict(item)
            if clock.open_start is not None:
                decoded["duration_seconds"] = adw_data.duration(clock.open_start, None, None)
            if clock.quiet_since is not None:
                decoded["stalled_seconds"] = adw_data.quiet_for(clock.quiet_since, None)
            fresh[i] = decoded
    return {**data, "workflows": fresh, "last_updated": now_iso()}


def _clocks(item: Any) -> Clocks | None:
    """Return what a plain item's clock fields come from (data not built by the index: a cluster view's)."""
    if not isinstance(item, dict):
        return None
    start = adw_data.text(item.get("start_time")) if item.get("end_time") is None else None
    activity = adw_data.parse_time(adw_data.text(item.get("last_activity"))) if item.get("stalled") is True else None
    clocks = Clocks(start, None if activity is None else activity.timestamp())
    return None if clocks == (None, None) else clocks


def history(data: Any, rows: list[dict[str, Any]]) -> Any:
    """Return history data with the cost trends as of now."""
    if not isinstance(data, dict) or not isinstance(data.get("analytics"), dict):
        return data
    return {**data, "analytics": {**data["analytics"], **cost_trends(rows, datetime.now(UTC))}}
