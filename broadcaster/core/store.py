"""Event storage: the ``EventStore`` contract and its in-memory implementation.

The durable implementation is ``sqlite_store.SqliteEventStore``. Every detected change is
appended before it is broadcast; ``append`` only puts the event in memory, so broadcasting never
waits on the disk.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .events import Event


@dataclass(frozen=True, slots=True)
class Loaded:
    """What an opened log knows: its epoch, each channel's last event, and the seq floor.

    Every channel's next seq is above both its last event and ``floor``: after an unclean stop
    the floor is raised above every seq that may have reached a client (see ``SqliteEventStore``).
    """

    epoch: str
    last: dict[str, Event]
    clean: bool = True
    floor: int = 0


class EventStore(Protocol):
    """Append-only storage of events, by channel and seq.

    Contract: ``open`` returns the epoch (stable for as long as the stored history is, new when
    the log was missing, unreadable or reset), the last event of each channel and the seq floor.
    ``append`` never blocks and never raises; an appended event is visible to ``events`` at once
    (unless superseded while the store cannot write). Events of one channel are appended in
    increasing seq. ``contiguous_from(channel)`` is the lowest seq from which the store holds
    every event of that channel up to its newest (the newest seq + 1 if it holds none).
    ``problem`` says why the store cannot write, while it cannot. ``close`` makes everything
    appended durable.
    """

    async def open(self) -> Loaded: ...

    def problem(self) -> str | None: ...

    def append(self, event: Event) -> None: ...

    def contiguous_from(self, channel: str) -> int: ...

    async def events(self, channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]: ...

    async def run(self) -> None: ...

    async def size(self) -> tuple[int, int]:
        """Return the events the store holds and the bytes of its files (0 in memory)."""
        ...

    async def close(self) -> None: ...


class Continuity:
    """Per channel: the newest seq held and the lowest seq from which none is missing."""

    def __init__(self) -> None:
        self.newest: dict[str, int] = {}
        self.start: dict[str, int] = {}

    def add(self, event: Event) -> None:
        if self.newest.get(event.channel) != event.seq - 1:
            self.start[event.channel] = event.seq  # a gap (first event, or a crash): history starts here
        self.newest[event.channel] = event.seq

    def trimmed(self, channel: str, oldest: int) -> None:
        self.start[channel] = max(self.start.get(channel, oldest), oldest)

    def contiguous_from(self, channel: str) -> int:
        return self.start.get(channel, self.newest.get(channel, 0) + 1)


class MemoryEventStore:
    """An EventStore in memory: nothing survives the process. For tests and ``[event_log] path = ""``."""

    def __init__(self, *, keep_per_channel: int = 1000) -> None:
        self._keep = keep_per_channel
        self._channels: dict[str, deque[tuple[int, Event]]] = {}
        self._next_id = 1
        self._continuity = Continuity()
        self.epoch = secrets.token_hex(8)

    async def open(self) -> Loaded:
        return Loaded(self.epoch, {})

    def problem(self) -> str | None:
        return None

    def append(self, event: Event) -> None:
        held = self._channels.setdefault(event.channel, deque(maxlen=self._keep))
        held.append((self._next_id, event))
        self._next_id += 1
        self._continuity.add(event)
        if len(held) == self._keep:
            self._continuity.trimmed(event.channel, held[0][1].seq)

    def contiguous_from(self, channel: str) -> int:
        return self._continuity.contiguous_from(channel)

    async def events(self, channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]:
        if channel is not None:
            return select_events(self._channels.get(channel, ()), channel, since, limit)
        return select_events(heapq.merge(*self._channels.values()), None, since, limit)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def size(self) -> tuple[int, int]:
        return sum(len(held) for held in self._channels.values()), 0

    async def close(self) -> None:
        return None


def select_events(
    rows: Iterable[tuple[int, Event]], channel: str | None, since: int, limit: int
) -> list[tuple[int, Event]]:
    """Pick events after ``since`` (a seq within ``channel``, else a log id), up to ``limit``."""
    picked = (r for r in rows if (r[1].channel == channel and r[1].seq > since) or (channel is None and r[0] > since))
    return list(itertools.islice(picked, limit))
