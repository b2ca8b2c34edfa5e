"""The event log: fresh channel data in, an Event out only when the digest changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .snapshot import digest

if TYPE_CHECKING:
    from .spec import Catalog
    from .store import EventStore


@dataclass(frozen=True, slots=True)
class Event:
    """One real change of one channel. ``data`` is never mutated after the event exists."""

    channel: str
    seq: int
    type: str
    data: Any
    digest: str
    timestamp: float  # epoch seconds


def empty_event(catalog: Catalog, channel: str, timestamp: float) -> Event:
    """Return the seq-0 event of a channel that has no data yet: its empty shape."""
    spec = catalog.spec_of(channel)
    return Event(channel, 0, spec.type, spec.empty(), catalog.empty_digest(spec.family), timestamp)


class EventLog:
    """Number the real changes of each channel; drop data whose digest equals the last one.

    Every channel starts at its empty shape with seq 0, so data equal to that is no change.
    Each new event is appended to ``store`` before it is returned (and so before it is broadcast).
    """

    def __init__(self, store: EventStore, *, catalog: Catalog, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.catalog = catalog
        self._clock = clock
        self._last: dict[str, Event] = {}
        self._floor = 0

    def load(self, last: Mapping[str, Event], *, floor: int = 0) -> None:
        """Continue from stored events; every channel's next seq is above its last one and ``floor``."""
        self._last = dict(last)
        self._floor = floor

    def record(self, channel: str, data: Any, *, known_digest: str | None = None) -> Event | None:
        """Return a new Event for ``data``, or None if it is the same state as the last one.

        ``known_digest``: the digest of ``data`` as its builder already knows it (see ``adw_index``).
        """
        spec = self.catalog.spec_of(channel)
        new_digest = known_digest or digest(data, spec.volatile)
        last = self._last.get(channel)
        if new_digest == (last.digest if last else self.catalog.empty_digest(spec.family)):
            return None
        # After a crash the floor is above every seq that may have reached a client: never reuse one.
        seq = max(last.seq if last else 0, self._floor) + 1
        event = Event(channel, seq, spec.type, data, new_digest, self._clock())
        self._last[channel] = event
        self.store.append(event)
        return event

    def last(self, channel: str) -> Event | None:
        """Return the newest event of ``channel``, if any."""
        return self._last.get(channel)

    def contiguous_from(self, channel: str) -> int:
        """Return the lowest seq from which the log holds every event of ``channel``."""
        return self.store.contiguous_from(channel)

    async def events(self, channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]:
        """Return stored events after ``since`` (a seq with ``channel``, else a log id), oldest first."""
        return await self.store.events(channel, since, limit)

    def problem(self) -> str | None:
        """Return why the log cannot write, while it cannot."""
        return self.store.problem()
