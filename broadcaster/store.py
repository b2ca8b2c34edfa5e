"""The durable event log: every detected change, appended before it is broadcast.

``append`` only puts the event in memory, so broadcasting never waits on the disk; a flusher
task commits what is pending every ``flush_interval`` seconds in one transaction. A kill -9
therefore loses at most the events detected since the last commit. Because some of those may
already have been broadcast, the log remembers whether the last run stopped cleanly; after an
unclean stop every channel's seq resumes ``CRASH_SEQ_GAP`` above its last stored event, so no
seq a client may have seen is ever given to different data.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosqlite
import orjson

from sources.sqlite import is_lock

from .errors import StartupError
from .events import Event

logger = logging.getLogger(__name__)

CRASH_SEQ_GAP = 10_000  # far more events than one unflushed batch can hold for one channel


@dataclass(frozen=True, slots=True)
class Loaded:
    """What an opened log knows: its epoch, each channel's last event, and how the last run ended."""

    epoch: str
    last: dict[str, Event]
    clean: bool


class EventStore(Protocol):
    """Append-only storage of events, by channel and seq.

    Contract: ``open`` returns the epoch (stable for as long as the stored history is, new when
    the log was missing, unreadable or reset) and the last event of each channel. ``append``
    never blocks and never raises; an appended event is visible to ``events`` at once. Events
    of one channel are appended in increasing seq. ``contiguous_from(channel)`` is the lowest
    seq from which the store holds every event of that channel up to its newest (the newest
    seq + 1 if it holds none). ``close`` makes everything appended durable.
    """

    async def open(self) -> Loaded: ...

    def append(self, event: Event) -> None: ...

    def contiguous_from(self, channel: str) -> int: ...

    async def events(self, channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


class _Continuity:
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
        self._continuity = _Continuity()
        self.epoch = secrets.token_hex(8)

    async def open(self) -> Loaded:
        return Loaded(self.epoch, {}, clean=True)

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
            return _select(self._channels.get(channel, ()), channel, since, limit)
        return _select(heapq.merge(*self._channels.values()), None, since, limit)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


def _select(rows: Iterable[tuple[int, Event]], channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]:
    """Pick events after ``since`` (a seq within ``channel``, else a log id), up to ``limit``."""
    picked = (r for r in rows if (r[1].channel == channel and r[1].seq > since) or (channel is None and r[0] > since))
    return list(itertools.islice(picked, limit))


class SqliteEventStore:
    """An EventStore in a SQLite file of the service's own (WAL; one transaction per batch)."""

    def __init__(
        self,
        path: Path,
        *,
        flush_interval: float = 0.05,
        batch_max: int = 500,
        keep_per_channel: int = 1000,
        max_age: float = 7 * 86400,
        trim_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.flushed = 0  # events committed so far by this process
        self.failure: str | None = None  # why the last write failed, while it does
        self._flush_interval = flush_interval
        self._batch_max = batch_max
        self._keep = keep_per_channel
        self._max_age = max_age
        self._trim_interval = trim_interval
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        self._pending: list[tuple[int, Event]] = []
        self._next_id = 1
        self._continuity = _Continuity()
        self._full = asyncio.Event()
        self._writing: asyncio.Future[None] | None = None

    async def open(self) -> Loaded:
        """Open (or create) the log; an unreadable file is kept aside and a new history begins."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn, loaded = await self._open()
        except sqlite3.DatabaseError as exc:
            if is_lock(exc):
                raise StartupError(
                    f"event log {self.path} is in use by another adw-broadcaster (give each its own [event_log] path)"
                ) from None
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                raise StartupError(f"event log {self.path}: {exc}") from None
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(self._clock())}")
            logger.error("event log %s is unreadable (%s); moved to %s, starting a new history", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(Path(f"{aside}{suffix}"))
            conn, loaded = await self._open()
        self._conn = conn
        return loaded

    async def _open(self) -> tuple[aiosqlite.Connection, Loaded]:
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=0.5)
        try:
            # One service per log: the exclusive lock, held from the first write on, keeps a
            # second one out (it would interleave seq numbers).
            await conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")  # a commit survives a crash of this process
            await conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
                " seq INTEGER NOT NULL, type TEXT NOT NULL, data BLOB NOT NULL, digest TEXT NOT NULL,"
                " timestamp REAL NOT NULL, UNIQUE (channel, seq))"
            )
            meta = {str(k): str(v) for k, v in await conn.execute_fetchall("SELECT key, value FROM meta")}
            epoch = meta.get("epoch") or secrets.token_hex(8)
            clean = meta.get("running", "0") != "1"
            await conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("epoch", epoch), ("running", "1")])
            last = {
                row[1]: _event(row)
                for row in await conn.execute_fetchall(
                    "SELECT e.id, e.channel, e.seq, e.type, e.data, e.digest, e.timestamp FROM events e"
                    " JOIN (SELECT channel, MAX(seq) AS seq FROM events GROUP BY channel) m"
                    " ON e.channel = m.channel AND e.seq = m.seq"
                )
            }
            # The start of each channel's unbroken run of seqs, ending at its newest event.
            for channel, start in await conn.execute_fetchall(
                "SELECT channel, MAX(CASE WHEN prev IS NULL OR prev != seq - 1 THEN seq END) FROM"
                " (SELECT channel, seq, LAG(seq) OVER (PARTITION BY channel ORDER BY seq) AS prev FROM events)"
                " GROUP BY channel"
            ):
                self._continuity.start[channel] = start
            for channel, event in last.items():
                self._continuity.newest[channel] = event.seq
            max_id = await conn.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM events")
            self._next_id = list(max_id)[0][0] + 1
        except BaseException:
            await conn.close()
            raise
        if not clean:
            logger.warning(
                "the last run of %s did not stop cleanly: up to one batch of events may be lost; "
                "seq numbers continue %d higher",
                self.path,
                CRASH_SEQ_GAP,
            )
        return conn, Loaded(epoch, last, clean)

    def append(self, event: Event) -> None:
        self._pending.append((self._next_id, event))
        self._next_id += 1
        self._continuity.add(event)
        if len(self._pending) >= self._batch_max:
            self._full.set()

    def contiguous_from(self, channel: str) -> int:
        return self._continuity.contiguous_from(channel)

    async def events(self, channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]:
        """Return up to ``limit`` events after ``since`` (a seq with ``channel``, else a log id), oldest first."""
        conn = self._connection()
        where, params = ("channel = ? AND seq > ?", (channel, since)) if channel else ("id > ?", (since,))
        rows = await conn.execute_fetchall(
            f"SELECT id, channel, seq, type, data, digest, timestamp FROM events WHERE {where}"
            f" ORDER BY {'seq' if channel else 'id'} LIMIT ?",
            (*params, limit),
        )
        stored = [(row[0], _event(row)) for row in rows]
        seen = {i for i, _ in stored}
        # Pending events are newer than every stored one; a batch just committed may be in both.
        unflushed = [(i, e) for i, e in _select(self._pending, channel, since, limit) if i not in seen]
        return (stored + unflushed)[:limit]

    async def run(self) -> None:
        """Commit pending events every flush_interval (sooner when a batch is full); trim on a timer."""
        next_trim = time.monotonic() + self._trim_interval
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), self._flush_interval)
            except TimeoutError:
                pass
            self._full.clear()
            try:
                await self.flush()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + self._trim_interval
                    await self.trim()
            except sqlite3.Error as exc:  # disk full, file removed...: keep the events, try again
                if self.failure != str(exc):
                    logger.error(
                        "event log %s: cannot write (%s); %d events waiting", self.path, exc, len(self._pending)
                    )
                self.failure = str(exc)
            else:
                self.failure = None

    async def flush(self) -> None:
        """Commit every pending event, one transaction per batch."""
        while self._pending:
            # The write is its own task: a caller cancelled mid-transaction (at shutdown) stops
            # waiting, but the transaction still ends cleanly, and close() waits for it.
            self._writing = asyncio.ensure_future(self._write(self._pending[: self._batch_max]))
            await asyncio.shield(self._writing)

    async def _write(self, batch: list[tuple[int, Event]]) -> None:
        conn = self._connection()
        rows = [
            (i, e.channel, e.seq, e.type, orjson.dumps(e.data, option=orjson.OPT_NON_STR_KEYS), e.digest, e.timestamp)
            for i, e in batch
        ]
        await conn.execute("BEGIN")
        try:
            await conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            raise
        del self._pending[: len(batch)]  # nothing else removes from the head: one write at a time
        self.flushed += len(batch)

    async def trim(self) -> int:
        """Drop events past each channel's count and age limits (never a channel's newest); return how many."""
        conn = self._connection()
        cutoff = self._clock() - self._max_age
        cursor = await conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, timestamp,"
            " ROW_NUMBER() OVER (PARTITION BY channel ORDER BY seq DESC) AS newer FROM events)"
            " WHERE newer > ? OR (newer > 1 AND timestamp < ?))",
            (self._keep, cutoff),
        )
        removed = cursor.rowcount
        if removed:
            for channel, oldest in await conn.execute_fetchall("SELECT channel, MIN(seq) FROM events GROUP BY channel"):
                self._continuity.trimmed(channel, oldest)
            logger.debug("event log: trimmed %d events", removed)
        return removed

    async def close(self) -> None:
        """Commit what is pending, record a clean stop and close the file."""
        if self._conn is None:
            return
        try:
            if self._writing is not None and not self._writing.done():
                with contextlib.suppress(sqlite3.Error):
                    await self._writing
            await self.flush()
            await self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('running', '0')")
        finally:
            await self._conn.close()
            self._conn = None

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("Call open() first")
        return self._conn


def _event(row: sqlite3.Row | tuple[object, ...]) -> Event:
    _, channel, seq, kind, data, digest, timestamp = row
    return Event(str(channel), int(seq), str(kind), orjson.loads(data), str(digest), float(timestamp))  # type: ignore[arg-type]
