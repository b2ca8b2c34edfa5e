"""The book of alerts: which are open, which resolved lately, which acknowledged.

An alert opens once when its cause appears and resolves once when the cause goes away; while
open its wording stays as it was at opening (so a growing ``stalled_seconds`` is no new event).
The book is the ``alerts`` channel's data and is restored from the event log's last ``alerts``
event at start, so nothing opens or resolves twice for one cause across a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from ..channels.schemas import ALERT_SEVERITIES
from .rules import Cause

FIELDS = ("id", "rule", "subject", "severity", "title", "text", "opened_at", "resolved_at", "link")
TEXT_FIELDS = ("id", "rule", "subject", "title", "text", "opened_at", "link")  # sorted by, joined into messages


class AlertBook:
    """Open and recently resolved alerts; ``apply`` turns causes into openings and resolutions."""

    def __init__(self, *, keep_recent: int = 50, clean: Callable[[Any], Any] = lambda value: value) -> None:
        self.open: dict[str, dict[str, Any]] = {}
        self.recent: list[dict[str, Any]] = []  # resolved, newest first
        self._keep = keep_recent
        self._clean = clean

    def apply(
        self, causes: Mapping[str, Cause], judged: Collection[str], now: str, keep: Collection[str] = ()
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Open an alert for each new cause; resolve the open ones of a ``judged`` rule whose cause went.

        Rules not in ``judged`` (their input has not been read yet) and ids in ``keep`` (their
        subject is being checked again) resolve nothing. Returns (opened, resolved).
        """
        opened = [self._open(cause, now) for alert_id, cause in causes.items() if alert_id not in self.open]
        gone = [
            alert_id
            for alert_id, alert in self.open.items()
            if alert_id not in causes and alert["rule"] in judged and alert_id not in keep
        ]
        resolved = [self._resolve(alert_id, now) for alert_id in gone]
        return opened, resolved

    def ack(self, alert_ids: Iterable[str] | None = None) -> list[str]:
        """Acknowledge the open alerts ``alert_ids`` (None: every open one); return those that were not yet."""
        wanted = self.open.keys() if alert_ids is None else [i for i in alert_ids if i in self.open]
        done = [alert_id for alert_id in wanted if not self.open[alert_id]["acknowledged"]]
        for alert_id in done:
            self.open[alert_id] = {**self.open[alert_id], "acknowledged": True}
        return done

    def data(self) -> dict[str, Any]:
        """Return the channel's data: ``{open: newest first, recent: resolved, newest first}``."""
        newest = sorted(self.open.values(), key=lambda alert: (alert["opened_at"], alert["id"]), reverse=True)
        return {"open": newest, "recent": list(self.recent)}

    def restore(self, data: Any) -> None:
        """Continue from the channel's stored data; anything that is not an alert is left out."""
        if not isinstance(data, dict):
            return
        self.open = {a["id"]: a for a in _alerts(data.get("open")) if a["resolved_at"] is None}
        self.recent = [a for a in _alerts(data.get("recent")) if a["resolved_at"] is not None][: self._keep]

    def _open(self, cause: Cause, now: str) -> dict[str, Any]:
        fresh = {
            "id": cause.id,
            "rule": cause.rule,
            "subject": cause.subject,
            "severity": cause.severity,
            "title": cause.title,
            "text": cause.text,
            "opened_at": now,
            "resolved_at": None,
            "adw_id": cause.adw_id,
            "github_url": cause.github_url,
            "link": cause.link,
            "acknowledged": False,
        }
        alert: dict[str, Any] = self._clean(fresh)  # redacted like every other message: the text carries last_error
        self.open[cause.id] = alert
        return alert

    def _resolve(self, alert_id: str, now: str) -> dict[str, Any]:
        alert = {**self.open.pop(alert_id), "resolved_at": now}
        self.recent = [alert, *(a for a in self.recent if a["id"] != alert_id)][: self._keep]
        return alert


def _alerts(items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        return []
    return [
        {**item, "acknowledged": bool(item.get("acknowledged"))}
        for item in items
        if isinstance(item, dict)
        and all(name in item for name in FIELDS)
        and all(isinstance(item[name], str) for name in TEXT_FIELDS)  # a stored log is a file: it can hold anything
        and item["severity"] in ALERT_SEVERITIES
        and isinstance(item["resolved_at"], str | None)
        and isinstance(item.get("github_url"), str | None)
    ]
