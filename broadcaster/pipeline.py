"""The flow in one place: channel data -> digest -> event log -> throttle -> hub."""

from __future__ import annotations

import asyncio
from typing import Any

from .events import Event, EventLog
from .hub import Hub
from .throttle import Throttle


class Pipeline:
    """Turn fresh channel data into throttled, encoded-once messages."""

    def __init__(self, log: EventLog, throttle: Throttle, hub: Hub) -> None:
        self.log = log
        self.throttle = throttle
        self.hub = hub
        self._wake = asyncio.Event()

    def update(self, channel: str, data: Any, *, known_digest: str | None = None) -> Event | None:
        """Offer the newest ``data`` of ``channel``; return the event if it was a real change."""
        event = self.log.record(channel, data, known_digest=known_digest)  # same digest -> None, nothing else
        if event is None:
            return None
        ready = self.throttle.offer(event)
        if ready is not None:
            self.hub.publish(ready)
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
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - clock()))
                except TimeoutError:
                    pass
            self._wake.clear()
            for event in self.throttle.due():
                self.hub.publish(event)
