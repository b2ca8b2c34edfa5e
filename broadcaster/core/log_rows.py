"""How events become rows of the durable log and back: whole data, or a delta against the previous event.

A row of a channel with a keyed list (``ChannelSpec.keyed``) holds a delta (see ``deltas``) and
names its ``base``, the seq of the event it applies to, whenever that is smaller than the whole
data; every so often (when the deltas since the last whole row add up to its size, or after
``MAX_CHAIN`` of them) the row holds the whole data again, so rebuilding an event never reads
more than about twice the channel's size. Any other row holds the whole data (``base`` NULL).

Reading rebuilds: a delta row's data is its base's data with the delta applied, found by
replaying from the newest whole row at or before the base. A row that cannot be decoded, or a
delta whose base is gone, is reported to the caller and skipped; nothing here raises for what
the file holds.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from . import deltas
from .deltas import Base, Keyed
from .events import Event
from .spec import Catalog

logger = logging.getLogger(__name__)

MAX_CHAIN = 1000
COLUMNS = ("id", "channel", "seq", "type", "data", "digest", "timestamp", "base")
_SELECTED = ", ".join(COLUMNS)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _keyed(catalog: Catalog, channel: str) -> Keyed | None:
    try:
        return catalog.spec_of(channel).keyed
    except KeyError:  # a channel this version does not know (an older or newer log)
        return None


@dataclass(slots=True)
class _Chain:
    seq: int
    base: Base
    full_bytes: int
    delta_bytes: int = 0
    length: int = 0


class RowEncoder:
    """Encode each channel's events in seq order, as deltas where that is smaller."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._chains: dict[str, _Chain] = {}

    def encode(self, event: Event) -> tuple[bytes, int | None]:
        """Return the row data of ``event`` and the seq it is a delta against (None: whole data)."""
        keyed = _keyed(self._catalog, event.channel)
        if keyed is None:
            return _dumps(event.data), None
        chain = self._chains.pop(event.channel, None)
        base: Base | None = None
        if chain is not None and chain.seq == event.seq - 1:
            found = deltas.diff(chain.base, event.data, keyed)
            if found is not None:
                delta, base = found
                blob = _dumps(delta)
                if chain.delta_bytes + len(blob) <= chain.full_bytes and chain.length < MAX_CHAIN:
                    self._chains[event.channel] = _Chain(
                        event.seq, base, chain.full_bytes, chain.delta_bytes + len(blob), chain.length + 1
                    )
                    return blob, chain.seq
        blob = _dumps(event.data)
        base = base or deltas.base_of(event.data, keyed)
        if base is not None:
            self._chains[event.channel] = _Chain(event.seq, base, len(blob))
        return blob, None

    def forget(self, channel: str) -> None:
        """Write the next event of ``channel`` whole (the one before it will not be stored)."""
        self._chains.pop(channel, None)


@dataclass(frozen=True, slots=True)
class Row:
    """A stored row, its data decoded but not rebuilt."""

    id: int
    channel: str
    seq: int
    type: str
    value: Any
    digest: str
    timestamp: float
    base: int | None


def parse(row: Iterable[object]) -> Row | None:
    """Return the decoded row, or None if its data is not JSON or a column has the wrong type."""
    try:
        row_id, channel, seq, kind, data, digest, timestamp, base = row
        return Row(
            int(row_id),  # type: ignore[call-overload]
            str(channel),
            int(seq),  # type: ignore[call-overload]
            str(kind),
            orjson.loads(data),  # type: ignore[arg-type]
            str(digest),
            float(timestamp),  # type: ignore[arg-type]
            None if base is None else int(base),  # type: ignore[call-overload]
        )
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class _State:
    seq: int
    value: Any = None
    base: Base | None = None


class Rebuilder:
    """Turn rows of any channels, each channel's in seq order, into Events with whole data."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._states: dict[str, _State] = {}

    def needs_base(self, row: Row) -> bool:
        """Return whether the rows from the newest whole one up to ``row.base`` must be taken first."""
        state = self._states.get(row.channel)
        return row.base is not None and (state is None or state.seq != row.base)

    def take(self, row: Row, *, want: bool = True) -> Event | None:
        """Return the Event of ``row`` (data only if ``want``); None if it cannot be rebuilt."""
        if row.base is None:
            self._states[row.channel] = _State(row.seq, value=row.value)
            return Event(row.channel, row.seq, row.type, row.value, row.digest, row.timestamp)
        state = self._states.pop(row.channel, None)
        keyed = _keyed(self._catalog, row.channel)
        if state is None or state.seq != row.base or keyed is None:
            return None
        base = state.base or deltas.base_of(state.value, keyed)
        if base is None:
            return None
        try:
            new = deltas.apply(base, row.value, keyed)
        except ValueError:
            return None
        self._states[row.channel] = _State(row.seq, base=new)
        return Event(
            row.channel, row.seq, row.type, deltas.data_of(new, keyed) if want else None, row.digest, row.timestamp
        )


class RowReader:
    """Read rows of one log file into Events; say once per row what cannot be read, and count it."""

    def __init__(self, path: Path, catalog: Catalog) -> None:
        self.path = path
        self.catalog = catalog
        self.count = 0  # rows skipped because their data could not be decoded or rebuilt
        self._ids: set[object] = set()

    async def rebuild(self, conn: aiosqlite.Connection, rows: Iterable[sqlite3.Row]) -> list[tuple[int, Event]]:
        """Return the events of ``rows`` (each channel's in seq order) with whole data; skip what cannot be read."""
        rebuilder = Rebuilder(self.catalog)
        events: list[tuple[int, Event]] = []
        for raw in rows:
            row = self._parse(raw)
            if row is None:
                continue
            if rebuilder.needs_base(row):
                for prior in await conn.execute_fetchall(
                    f"SELECT {_SELECTED} FROM events WHERE channel = ? AND seq <= ? AND seq >="
                    " (SELECT MAX(seq) FROM events WHERE channel = ? AND base IS NULL AND seq <= ?) ORDER BY seq",
                    (row.channel, row.base, row.channel, row.base),
                ):
                    if (earlier := self._parse(prior)) is not None:
                        rebuilder.take(earlier, want=False)
            event = rebuilder.take(row)
            if event is None:
                self._unreadable(row.id, "its delta has no base to apply to")
                continue
            events.append((row.id, event))
        return events

    def _parse(self, raw: sqlite3.Row) -> Row | None:
        # Stored data is already clean: written cleaned, and an older log is scrubbed at open.
        row = parse(raw)
        if row is None:
            self._unreadable(raw[0], "cannot be decoded")
        return row

    def _unreadable(self, row_id: object, why: str) -> None:
        if row_id not in self._ids:  # counted and said once, however often it is read
            self._ids.add(row_id)
            self.count += 1
            logger.warning("event log %s: event %r %s; skipped", self.path, row_id, why)
