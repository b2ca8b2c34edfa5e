"""The alerts engine: the rules over the newest channel events, the book, the channel and delivery.

It listens to the pipeline (every recorded event), keeps the newest data of the channels the
rules read, and judges them again on each of their events and when a ``service_error`` alert
comes due. Each opening and each resolution changes the ``alerts`` channel (an event, in the
log like every other, so a restart continues from it) and is handed to delivery as one message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from sources.tasks import wait_set

from ..channels.specs import ADW_MONITOR, ALERTS, QUEUE, SYSTEM_STATUS
from ..config.rules import ALERT_RULES
from ..config.sections import AlertsConfig
from ..core.clock import iso_utc
from ..core.events import Event, EventLog
from ..core.pipeline import Pipeline
from .book import AlertBook
from .delivery import Message
from .rules import Cause, adw_causes, errors_since, queue_causes, service_causes

ADW_RULES = ("adw_failed", "adw_stalled", "adw_over_budget")
# the channels the rules read, and the rules each one's data judges
INPUTS = {ADW_MONITOR.family: ADW_RULES, QUEUE.family: ("queue_blocked",), SYSTEM_STATUS.family: ("service_error",)}
KIND = {"error": "failure", "warning": "warning"}


class Alerts:
    """Open and resolve alerts from the channels' data; publish and deliver them (see the module)."""

    def __init__(
        self,
        config: AlertsConfig,
        *,
        pipeline: Pipeline,
        log: EventLog,
        base: str,
        send: Callable[[Message], None],
        clean: Callable[[Any], Any] = lambda value: value,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert set(config.on) <= set(ALERT_RULES)
        self.config = config
        self.book = AlertBook(keep_recent=config.keep_recent, clean=clean)
        self._send = send  # hands a message to delivery (never waits)
        self._pipeline = pipeline
        self._log = log
        self._base = base
        self._clock = clock
        self._latest: dict[str, Any] = {}
        self._since: dict[str, float] = {}  # status entry -> since when it has been "error"
        self._decoded: dict[int, tuple[Any, Any]] = {}  # id(encoded monitor item) -> (it, decoded)
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Continue from the event log: the book as last recorded, the inputs as last seen."""
        last = self._log.last(ALERTS.family)
        if last is not None:
            self.book.restore(last.data)
        for channel in INPUTS:
            event = self._log.last(channel)
            if event is not None:
                self._latest[channel] = event.data
        self.judge()

    def observe(self, event: Event) -> None:
        """Note a recorded event (a pipeline listener); one the rules read is judged soon after."""
        if event.channel in INPUTS:
            self._latest[event.channel] = event.data
            self._wake.set()

    def _monitor(self) -> dict[str, Any] | None:
        """Return the newest monitor data with its items as dicts (the index keeps them encoded)."""
        monitor = self._latest.get(ADW_MONITOR.family)
        if not isinstance(monitor, dict):
            return None
        decoded = {}
        for item in monitor.get("workflows") or []:
            if isinstance(item, orjson.Fragment):
                key = id(item)
                if key not in self._decoded:  # each item decoded once while it stays the same object
                    self._decoded[key] = (item, orjson.loads(orjson.dumps(item)))
                decoded[key] = self._decoded[key]
            else:
                decoded[id(item)] = (item, item)
        self._decoded = {k: v for k, v in decoded.items() if isinstance(v[0], orjson.Fragment)}
        return {**monitor, "workflows": [plain for _, plain in decoded.values()]}

    async def run(self) -> None:
        """Continue from the event log, then judge on each new input and when a service_error alert comes due."""
        self.start()
        while True:
            due = self._next_due()
            await wait_set(self._wake, None if due is None else max(0.0, due - self._clock()))
            self._wake.clear()
            self.judge()

    def judge(self) -> None:
        """Apply the rules to the newest inputs; publish and deliver what opened and resolved."""
        now, on, base = self._clock(), self.config.on, self._base
        causes: dict[str, Cause] = {}
        judged: set[str] = set()
        keep: set[str] = set()
        monitor = self._monitor()
        if monitor is not None:
            causes |= adw_causes(monitor, on, self.config.over_budget_ratio, base)
            judged.update(INPUTS[ADW_MONITOR.family])
        queue = self._latest.get(QUEUE.family)
        if isinstance(queue, dict):
            causes |= queue_causes(queue, on, base)
            judged.update(INPUTS[QUEUE.family])
        status = self._latest.get(SYSTEM_STATUS.family)
        if isinstance(status, dict):
            self._since = errors_since(status, self._since, now)
            causes |= service_causes(status, self._since, now, self.config.service_error_after, on, base)
            judged.update(INPUTS[SYSTEM_STATUS.family])
            # an open one resolves when its entry recovers, not while it is still failing or being checked
            services = status.get("services") or {}
            keep = {
                f"service_error:{name}"
                for name, entry in services.items()
                if isinstance(entry, dict) and entry.get("status") in ("error", "unknown")
            }
        opened, resolved = self.book.apply(causes, judged, iso_utc(now), keep)
        if opened or resolved:
            self._publish()
        for alert in opened:
            self._send(self.message(alert, opened=True))
        for alert in resolved:
            self._send(self.message(alert, opened=False))

    def ack(self, alert_id: str | None) -> list[str] | None:
        """Acknowledge one open alert (None: all); return those newly acknowledged, None for an unknown id."""
        if alert_id is not None and alert_id not in self.book.open:
            return None
        done = self.book.ack(None if alert_id is None else [alert_id])
        if done:
            self._publish()
        return done

    def message(self, alert: dict[str, Any], *, opened: bool) -> Message:
        """Return the message that tells of ``alert`` opening or resolving: text, links, id."""
        links = [alert["link"], *([alert["github_url"]] if alert.get("github_url") else [])]
        if opened:
            body = "\n".join([alert["text"], *links, f"alert {alert['id']}"])
            return Message(f"[{alert['severity']}] {alert['title']}", body, KIND[alert["severity"]])
        body = "\n".join([f"Resolved: {alert['text']}", *links, f"alert {alert['id']}"])
        return Message(f"[resolved] {alert['title']}", body, "success")

    def _publish(self) -> None:
        self._pipeline.update(ALERTS.family, self.book.data())

    def _next_due(self) -> float | None:
        """Return when the next service_error alert would open (epoch seconds), if one is pending."""
        if "service_error" not in self.config.on:
            return None
        pending = [t for name, t in self._since.items() if f"service_error:{name}" not in self.book.open]
        return min(pending) + self.config.service_error_after if pending else None
