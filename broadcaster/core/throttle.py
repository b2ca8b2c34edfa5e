"""Per-channel throttle: at most one message per interval, the newest state always delivered.

The first change after a quiet interval goes out at once (leading edge). Changes inside the
window replace each other; the newest goes out when the window ends (trailing edge). The
throttle is a plain state machine on an injected clock; ``pipeline`` drives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .events import Event


class Throttle:
    """Decide, per channel, whether an event goes out now or waits for its window to end."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.interval = interval
        self.clock = clock
        self._last_sent: dict[str, float] = {}
        self._pending: dict[str, tuple[float, Event]] = {}  # channel -> (due time, newest event)

    def offer(self, event: Event) -> Event | None:
        """Return ``event`` if it may go out now; otherwise hold it (replacing an older one)."""
        channel = event.channel
        held = self._pending.get(channel)
        if held is not None:
            self._pending[channel] = (held[0], event)
            return None
        now = self.clock()
        last = self._last_sent.get(channel)
        if last is None or now - last >= self.interval:
            self._last_sent[channel] = now
            return event
        self._pending[channel] = (last + self.interval, event)
        return None

    def holds(self, channel: str) -> bool:
        """Return whether an event of ``channel`` waits for its window (a new one would replace it)."""
        return channel in self._pending

    def due(self) -> list[Event]:
        """Return (and forget) the held events whose window has ended, oldest deadline first."""
        now = self.clock()
        ready = sorted((due, event.channel) for due, event in self._pending.values() if due <= now)
        out = []
        for _, channel in ready:
            _, event = self._pending.pop(channel)
            self._last_sent[channel] = now
            out.append(event)
        return out

    def next_deadline(self) -> float | None:
        """Return the clock time at which the earliest held event becomes due, if any."""
        return min((due for due, _ in self._pending.values()), default=None)
