"""The flow in one place: channel data -> digest -> event log -> throttle -> hub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sources.tasks import wait_set

from .counters import Counters, family
from .events import Event, EventLog
from .hub import Hub
from .throttle import Throttle


class Pipeline:
    """Turn fresh channel data into throttled, encoded-once messages."""

    def __init__(self, log: EventLog, throttle: Throttle, hub: Hub, counters: Counters | None = None) -> None:
        self.log = log
        self.throttle = throttle
        self.hub = hub
        self.counters = counters or Counters()
        self._wake = asyncio.Event()
        self._noticed: dict[str, float] = {}  # channel -> when its oldest unpublished change came in
        self.listeners: list[Callable[[Event], None]] = []  # told of every recorded event (the backplane)

    def update(self, channel: str, data: Any, *, known_digest: str | None = None) -> Event | None:
        """Offer the newest ``data`` of ``channel``; return the event if it was a real change."""
        event = self.log.record(channel, data, known_digest=known_digest)  # same digest -> None, nothing else
        if event is None:
            return None
        counters = self.counters
        counters.count(counters.recorded, family(channel))
        for listener in self.listeners:
            listener(event)
        self._noticed.setdefault(channel, time.monotonic())
        if self.throttle.holds(channel):
            counters.count(counters.coalesced, family(channel))
        ready = self.throttle.offer(event)
        if ready is not None:
            self._publish(ready)
        else:
            self._wake.set()  # a new deadline may be earlier than the one run() sleeps towards
        return event

    async def run(self) -> None:
        """Publish held events as their throttle windows end. Runs until cancelled."""
        clock = self.throttle.clock
        while True:
            deadline = self.throttle.next_deadline()
            if deadline is None:
                await self._wake.wait()
            else:
                await wait_set(self._wake, max(0.0, deadline - clock()))
            self._wake.clear()
            for event in self.throttle.due():
                self._publish(event)

    def _publish(self, event: Event) -> None:
        self.hub.publish(event)
        noticed = self._noticed.pop(event.channel, None)
        if noticed is not None and self.counters.latency is not None:
            self.counters.latency(time.monotonic() - noticed)
