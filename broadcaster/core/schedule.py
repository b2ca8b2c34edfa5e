"""When the sweep next owes each client something: clients visited when due, not on every sweep.

A sweep that looked at every client once a second cost ~0.5 us per client per second, busy or
idle: the largest per-client cost the service had beyond the writes themselves. A client owes
nothing before its heartbeat (``heartbeat_interval`` after its last write), its protocol ping
(``ping_interval`` after the peer was last heard) or, while its socket is full, its next look.
``Schedule`` files each client under the sweep tick of that moment; a sweep takes the ticks
that have come. Writes do not move a client (that would cost on every write): a client that
wrote meanwhile comes up early, finds nothing due and is filed again under its new moment, so
a busy client is looked at once per heartbeat interval, not once per sweep.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

T = TypeVar("T")


class Schedule(Generic[T]):
    """Items filed under the tick (a multiple of ``step`` seconds) at which they are next due."""

    def __init__(self, step: float) -> None:
        if step <= 0:
            raise ValueError("step must be > 0")
        self._step = step
        self._ticks: dict[int, set[T]] = {}
        self._at: dict[T, int] = {}
        self._done = -1  # the last tick handed out: nothing is filed at or before it

    def __len__(self) -> int:
        return len(self._at)

    def add(self, item: T, due: float) -> None:
        """File ``item`` to come up at the first sweep at or after ``due`` (or earlier, if it is filed so)."""
        tick = max(math.ceil(due / self._step), self._done + 1)
        old = self._at.get(item)
        if old is not None and old <= tick:
            return
        if old is not None:
            self._discard(item, old)
        self._at[item] = tick
        self._ticks.setdefault(tick, set()).add(item)

    def remove(self, item: T) -> None:
        """Forget ``item`` (no error if it is not filed)."""
        old = self._at.pop(item, None)
        if old is not None:
            self._discard(item, old)

    def take(self, now: float) -> list[T]:
        """Return (and unfile) every item due at ``now``; file them again with ``add``."""
        tick = math.floor(now / self._step)
        due = [t for t in self._ticks if t <= tick]
        self._done = max(self._done, tick)
        items: list[T] = []
        for t in sorted(due):
            for item in self._ticks.pop(t):
                del self._at[item]
                items.append(item)
        return items

    def _discard(self, item: T, tick: int) -> None:
        bucket = self._ticks.get(tick)
        if bucket is not None:
            bucket.discard(item)
            if not bucket:
                del self._ticks[tick]
