"""The durable event log: a SQLite file of the service's own, written in batches off the live path.

A flusher task commits what is pending every ``flush_interval`` seconds in one transaction, so a
kill -9 loses at most the events detected since the last commit (``log_file`` raises the seq
floor after such a stop, so no seq a client may have seen is ever given to different data).
Rows of list channels hold deltas against the previous event where that is smaller
(``log_rows``), so the log grows with what changed, not with the size of the channel.

Faults cost history, never the service: while the disk refuses writes the pending events stay
in memory (encoded once, at most ``max_pending``: older pending events of a channel give way to
its newest), writes are retried with backoff and ``problem()`` says why; a stored event that
cannot be decoded or rebuilt is skipped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from sources.backoff import Backoff
from sources.tasks import wait_set
from sources.values import Cleaner

from .events import Event
from .log_file import open_log
from .log_rows import COLUMNS, RowEncoder, RowReader
from .spec import Catalog
from .store import Continuity, Loaded, select_events

__all__ = ["SqliteEventStore"]

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY = 5.0
_COLUMNS = ", ".join(COLUMNS)


@dataclass(slots=True)
class _Pending:
    id: int
    event: Event
    blob: bytes | None = None  # encoded on the first write attempt, kept for retries
    base: int | None = None  # the seq the blob is a delta against (None: the whole data)


class SqliteEventStore:
    """An EventStore in a SQLite file of the service's own (WAL; one transaction per batch)."""

    def __init__(
        self,
        path: Path,
        *,
        catalog: Catalog,
        flush_interval: float = 0.05,
        batch_max: int = 500,
        keep_per_channel: int = 1000,
        max_age: float = 7 * 86400,
        max_pending: int = 10_000,
        trim_interval: float = 60.0,
        cleaner: Cleaner | None = None,
        on_problem: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.flushed = 0  # events committed so far by this process
        self.superseded = 0  # pending events dropped for a newer one of their channel while writes failed
        self.failure: str | None = None  # why the last write failed, while it does
        self.on_problem = on_problem
        self._flush_interval = flush_interval
        self._retries = Backoff(2 * flush_interval, MAX_RETRY_DELAY)  # failed writes: 2, 4, 8... flush intervals
        self._batch_max = batch_max
        self._keep = keep_per_channel
        self._max_age = max_age
        self._max_pending = max_pending
        self._trim_interval = trim_interval
        self._cleaner = cleaner or Cleaner()
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        self._pending: list[_Pending] = []
        self._encoder = RowEncoder(catalog)
        self._reader = RowReader(path, catalog)
        self._inflight = 0  # pending entries at the head that a write is committing
        self._next_id = 1
        self._continuity = Continuity()
        self._full = asyncio.Event()
        self._appended = asyncio.Event()
        self._writing: asyncio.Future[None] | None = None

    async def open(self) -> Loaded:
        """Open (or create) the log; an unreadable file is kept aside and a new history begins."""
        opened = await open_log(self.path, cleaner=self._cleaner, reader=self._reader, clock=self._clock)
        self._conn = opened.conn
        self._continuity = Continuity()
        self._continuity.start.update(opened.starts)
        for channel, event in opened.loaded.last.items():
            self._continuity.newest[channel] = event.seq
        self._next_id = opened.next_id
        return opened.loaded

    @property
    def undecodable(self) -> int:
        """Return how many stored events were skipped because they could not be decoded or rebuilt."""
        return self._reader.count

    def append(self, event: Event) -> None:
        self._pending.append(_Pending(self._next_id, event))
        self._next_id += 1
        self._continuity.add(event)
        self._appended.set()
        if len(self._pending) > self._max_pending:
            self._compact()
        if len(self._pending) >= self._batch_max:
            self._full.set()

    def _compact(self) -> None:
        """Drop pending events superseded by a newer one of their channel; then the oldest, to fit."""
        head, rest = self._pending[: self._inflight], self._pending[self._inflight :]
        newest: dict[str, int] = {}
        for p in rest:
            newest[p.event.channel] = p.id
        kept = [p for p in rest if newest[p.event.channel] == p.id]
        excess = max(0, len(head) + len(kept) - self._max_pending)
        dropped = [p for p in rest if newest[p.event.channel] != p.id] + kept[:excess]
        kept = kept[excess:]
        for p in dropped:  # the stored history of that channel now has a hole: it is continuous after it
            channel = p.event.channel
            self._continuity.start[channel] = max(self._continuity.start.get(channel, 0), p.event.seq + 1)
            self._encoder.forget(channel)
        holed = {p.event.channel for p in dropped}
        for p in kept:  # a delta against a dropped event could not be rebuilt: encode them again, whole first
            if p.event.channel in holed:
                p.blob = p.base = None
        self.superseded += len(dropped)
        self._pending = head + kept

    def contiguous_from(self, channel: str) -> int:
        return self._continuity.contiguous_from(channel)

    def problem(self) -> str | None:
        """Return why the log cannot write, while it cannot."""
        if self.failure is None:
            return None
        return f"cannot write {self.path} ({self.failure}); {len(self._pending)} events waiting in memory"

    async def events(self, channel: str | None, since: int, limit: int) -> list[tuple[int, Event]]:
        """Return up to ``limit`` events after ``since`` (a seq with ``channel``, else a log id), oldest first."""
        conn = self._connection()
        where, params = ("channel = ? AND seq > ?", (channel, since)) if channel else ("id > ?", (since,))
        rows = await conn.execute_fetchall(
            f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY {'seq' if channel else 'id'} LIMIT ?",
            (*params, limit),
        )
        stored = await self._reader.rebuild(conn, rows)
        seen = {i for i, _ in stored}
        # Pending events are newer than every stored one; a batch just committed may be in both.
        pending = [(p.id, p.event) for p in self._pending]
        unflushed = [(i, e) for i, e in select_events(pending, channel, since, limit) if i not in seen]
        return (stored + unflushed)[:limit]

    async def run(self) -> None:
        """Commit pending events every flush_interval (sooner when a batch is full); trim on a timer."""
        next_trim = time.monotonic() + self._trim_interval
        failures = 0
        while True:
            if not self._pending:  # idle: no timer ticking, wake for an append (or the next trim)
                await wait_set(self._appended, max(0.0, next_trim - time.monotonic()))
            delay = self._retries.delay(failures) if failures else self._flush_interval
            await wait_set(self._full, delay)
            self._full.clear()
            self._appended.clear()
            if not self._pending and time.monotonic() < next_trim:
                continue
            try:
                await self.flush()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + self._trim_interval
                    await self.trim()
            except sqlite3.Error as exc:  # disk full, file removed...: keep the events, try again later
                failures += 1
                if self.failure != str(exc):
                    logger.error(
                        "event log %s: cannot write (%s); %d events waiting", self.path, exc, len(self._pending)
                    )
                    self.failure = str(exc)
                    self._report()
            else:
                failures = 0
                if self.failure is not None:
                    logger.info("event log %s: writing again", self.path)
                    self.failure = None
                    self._report()

    def _report(self) -> None:
        if self.on_problem is not None:
            self.on_problem()

    async def flush(self) -> None:
        """Commit every pending event, one transaction per batch."""
        while self._pending:
            # The write is its own task: a caller cancelled mid-transaction (at shutdown) stops
            # waiting, but the transaction still ends cleanly, and close() waits for it.
            self._writing = asyncio.ensure_future(self._write(min(len(self._pending), self._batch_max)))
            await asyncio.shield(self._writing)

    async def _write(self, n: int) -> None:
        conn = self._connection()
        self._inflight = n
        try:
            batch = self._pending[:n]
            for p in batch:
                if p.blob is None:
                    p.blob, p.base = self._encoder.encode(p.event)
            rows = [
                (p.id, p.event.channel, p.event.seq, p.event.type, p.blob, p.event.digest, p.event.timestamp, p.base)
                for p in batch
            ]
            await conn.execute("BEGIN")
            try:
                await conn.executemany(
                    f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                raise
            del self._pending[:n]  # nothing else removes from the head: one write at a time
            self.flushed += n
        finally:
            self._inflight = 0

    async def size(self) -> tuple[int, int]:
        """Return the events the log holds (stored and pending) and its files' bytes (database and WAL)."""
        [(stored,)] = await self._connection().execute_fetchall("SELECT COUNT(*) FROM events")
        files = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                files += path.stat().st_size
        return int(stored) + len(self._pending) - self._inflight, files

    async def trim(self) -> int:
        """Drop events past each channel's count and age limits (never a channel's newest); return how many.

        What a channel keeps starts at a row with whole data: the oldest kept event's base chain
        (from the newest whole row at or before it) stays, so every kept event can be rebuilt.
        """
        conn = self._connection()
        cutoff = self._clock() - self._max_age
        doomed = await conn.execute_fetchall(
            "SELECT channel, MAX(seq) FROM (SELECT channel, seq, timestamp,"
            " ROW_NUMBER() OVER (PARTITION BY channel ORDER BY seq DESC) AS newer FROM events)"
            " WHERE newer > ? OR (newer > 1 AND timestamp < ?) GROUP BY channel",
            (self._keep, cutoff),
        )
        cursor = await conn.executemany(
            "DELETE FROM events WHERE channel = ?1 AND seq < COALESCE((SELECT MAX(seq) FROM events"
            " WHERE channel = ?1 AND base IS NULL AND seq <="
            " (SELECT MIN(seq) FROM events WHERE channel = ?1 AND seq > ?2)), ?2 + 1)",
            [(channel, upto) for channel, upto in doomed],
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
        except sqlite3.Error as exc:  # the disk still refuses: the next start counts as unclean
            logger.error(
                "event log %s: %d events could not be written at shutdown (%s)", self.path, len(self._pending), exc
            )
        finally:
            await self._conn.close()
            self._conn = None

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("Call open() first")
        return self._conn
