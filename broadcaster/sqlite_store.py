"""The durable event log: a SQLite file of the service's own, written in batches off the live path.

A flusher task commits what is pending every ``flush_interval`` seconds in one transaction, so a
kill -9 loses at most the events detected since the last commit. Because some of those may
already have been broadcast, the log records whether the last run stopped cleanly, and a *seq
floor*: after an unclean stop the floor is raised ``CRASH_SEQ_GAP`` above every seq stored so far
(and above the previous floor) before anything is served, and every channel's next seq is above
it. No seq a client may have seen is ever given to different data, after any number of crashes.

Faults cost history, never the service: while the disk refuses writes the pending events stay
in memory (encoded once, at most ``max_pending``: older pending events of a channel give way to
its newest), writes are retried with backoff and ``problem()`` says why; a stored event that
cannot be decoded is skipped and counted; a file that fails ``PRAGMA quick_check`` (or is not a
database) is moved aside at start and a new history (a new epoch) begins. The file is 0600:
it holds what the agents wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import orjson

from sources.sqlite import is_lock
from sources.values import Cleaner

from .channels import spec_of
from .errors import StartupError
from .events import Event
from .store import Continuity, Loaded, select_events

logger = logging.getLogger(__name__)

CRASH_SEQ_GAP = 10_000  # far more events than one unflushed batch can hold for one channel
MAX_RETRY_DELAY = 5.0
_COLUMNS = "id, channel, seq, type, data, digest, timestamp"


class _Unusable(Exception):
    """The log file cannot be trusted (it failed quick_check); it is moved aside."""


@dataclass(slots=True)
class _Pending:
    id: int
    event: Event
    blob: bytes | None = None  # encoded on the first write attempt, kept for retries


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
        max_pending: int = 10_000,
        trim_interval: float = 60.0,
        cleaner: Cleaner | None = None,
        on_problem: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.flushed = 0  # events committed so far by this process
        self.superseded = 0  # pending events dropped for a newer one of their channel while writes failed
        self.undecodable = 0  # stored events skipped because their data could not be decoded
        self._undecodable_ids: set[object] = set()
        self.failure: str | None = None  # why the last write failed, while it does
        self.on_problem = on_problem
        self._flush_interval = flush_interval
        self._batch_max = batch_max
        self._keep = keep_per_channel
        self._max_age = max_age
        self._max_pending = max_pending
        self._trim_interval = trim_interval
        self._cleaner = cleaner or Cleaner()
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        self._pending: list[_Pending] = []
        self._inflight = 0  # pending entries at the head that a write is committing
        self._next_id = 1
        self._continuity = Continuity()
        self._full = asyncio.Event()
        self._appended = asyncio.Event()
        self._writing: asyncio.Future[None] | None = None

    async def open(self) -> Loaded:
        """Open (or create) the log; an unreadable file is kept aside and a new history begins."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            conn, loaded = await self._open()
        except (sqlite3.DatabaseError, _Unusable) as exc:
            if isinstance(exc, sqlite3.DatabaseError):
                if is_lock(exc):
                    raise StartupError(
                        f"event log {self.path} is in use by another adw-broadcaster"
                        " (give each its own [event_log] path)"
                    ) from None
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                    raise StartupError(f"event log {self.path}: {exc}") from None
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(self._clock())}")
            logger.error("event log %s is unreadable (%s); moved to %s, starting a new history", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(Path(f"{aside}{suffix}"))
            self._continuity = Continuity()
            conn, loaded = await self._open()
        self._conn = conn
        return loaded

    async def _open(self) -> tuple[aiosqlite.Connection, Loaded]:
        _private(self.path)
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=0.5)
        try:
            # One service per log: the exclusive lock, held from the first write on, keeps a
            # second one out (it would interleave seq numbers).
            await conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")  # a commit survives a crash of this process
            check = [str(row[0]) for row in await conn.execute_fetchall("PRAGMA quick_check(5)")]
            if check != ["ok"]:
                raise _Unusable("; ".join(check))
            await conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
                " seq INTEGER NOT NULL, type TEXT NOT NULL, data BLOB NOT NULL, digest TEXT NOT NULL,"
                " timestamp REAL NOT NULL, UNIQUE (channel, seq))"
            )
            for suffix in ("-wal", "-shm"):
                _private(Path(f"{self.path}{suffix}"), create=False)
            meta = {str(k): str(v) for k, v in await conn.execute_fetchall("SELECT key, value FROM meta")}
            epoch = meta.get("epoch") or secrets.token_hex(8)
            clean = meta.get("running", "0") != "1"
            floor = _int(meta.get("seq_floor"))
            if meta.get("redaction") != self._cleaner.rule:
                await self._scrub(conn)
            last = await self._last_events(conn)
            if not clean:
                [(highest,)] = list(await conn.execute_fetchall("SELECT COALESCE(MAX(seq), 0) FROM events"))
                floor = max(floor, int(highest)) + CRASH_SEQ_GAP
            # Durable before anything is served: a second crash must not hand out these seqs again.
            await conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("epoch", epoch), ("running", "1"), ("seq_floor", str(floor))],
            )
            # The start of each channel's unbroken run of seqs, ending at its newest event.
            for channel, start in await conn.execute_fetchall(
                "SELECT channel, MAX(CASE WHEN prev IS NULL OR prev != seq - 1 THEN seq END) FROM"
                " (SELECT channel, seq, LAG(seq) OVER (PARTITION BY channel ORDER BY seq) AS prev FROM events)"
                " GROUP BY channel"
            ):
                self._continuity.start[str(channel)] = int(start)
            for channel, event in last.items():
                self._continuity.newest[channel] = event.seq
            [(max_id,)] = list(await conn.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM events"))
            self._next_id = int(max_id) + 1
        except BaseException:
            await conn.close()
            raise
        if not clean:
            logger.warning(
                "the last run of %s did not stop cleanly: up to one batch of events may be lost; "
                "seq numbers continue above %d",
                self.path,
                floor,
            )
        return conn, Loaded(epoch, last, clean, floor)

    async def _scrub(self, conn: aiosqlite.Connection) -> None:
        """Redact every stored event under the current rule, once, and leave no old bytes behind.

        A log written before redaction existed (or under other keys) holds credentials on disk;
        redacting on read would leave them in the file. ``secure_delete`` zeroes what the
        rewrite frees, and the WAL is truncated after.
        """
        await conn.execute("PRAGMA secure_delete=ON")
        changed, last_id = 0, 0
        while True:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT id, data FROM events WHERE id > ? ORDER BY id LIMIT 500", (last_id,)
                )
            )
            if not rows:
                break
            updates = []
            for row_id, data in rows:
                last_id = int(row_id)
                try:
                    value = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue  # undecodable: skipped on read as well
                cleaned = self._cleaner.clean(value)
                if cleaned != value:
                    updates.append((orjson.dumps(cleaned, option=orjson.OPT_NON_STR_KEYS), last_id))
            if updates:
                await conn.executemany("UPDATE events SET data = ? WHERE id = ?", updates)
                changed += len(updates)
        await conn.execute("INSERT OR REPLACE INTO meta VALUES ('redaction', ?)", (self._cleaner.rule,))
        if changed:
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            logger.warning(
                "event log %s: redacted %d stored events written under another redaction rule", self.path, changed
            )

    async def _last_events(self, conn: aiosqlite.Connection) -> dict[str, Event]:
        """Return each channel's newest event; one whose data cannot be decoded stands as unknown data."""
        last: dict[str, Event] = {}
        for row in await conn.execute_fetchall(
            f"SELECT {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))} FROM events e"
            " JOIN (SELECT channel, MAX(seq) AS seq FROM events GROUP BY channel) m"
            " ON e.channel = m.channel AND e.seq = m.seq"
        ):
            event = self._decode(row)
            if event is None:
                channel = str(row[1])
                try:
                    spec = spec_of(channel)
                except KeyError:
                    continue  # a channel this version does not know: nothing to continue
                # Keep the seq (never reused); an empty digest makes the next read of the source a change.
                event = Event(channel, int(row[2]), spec.type, spec.empty(), "", float(row[6]))
            last[event.channel] = event
        return last

    def _decode(self, row: sqlite3.Row | tuple[object, ...]) -> Event | None:
        try:
            _, channel, seq, kind, data, digest, timestamp = row
            # Stored data is already clean: written cleaned, and an older log is scrubbed at open.
            value = orjson.loads(data)  # type: ignore[arg-type]
            return Event(str(channel), int(seq), str(kind), value, str(digest), float(timestamp))  # type: ignore[arg-type]
        except (orjson.JSONDecodeError, TypeError, ValueError):
            if row[0] not in self._undecodable_ids:  # counted and said once, however often it is read
                self._undecodable_ids.add(row[0])
                self.undecodable += 1
                logger.warning("event log %s: event %r cannot be decoded; skipped", self.path, row[0])
            return None

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
        stored = [(int(row[0]), event) for row in rows if (event := self._decode(row)) is not None]
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
                try:
                    await asyncio.wait_for(self._appended.wait(), max(0.0, next_trim - time.monotonic()))
                except TimeoutError:
                    pass
            delay = self._flush_interval if not failures else min(MAX_RETRY_DELAY, self._flush_interval * 2**failures)
            try:
                await asyncio.wait_for(self._full.wait(), delay)
            except TimeoutError:
                pass
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
                    p.blob = orjson.dumps(p.event.data, option=orjson.OPT_NON_STR_KEYS)
            rows = [
                (p.id, p.event.channel, p.event.seq, p.event.type, p.blob, p.event.digest, p.event.timestamp)
                for p in batch
            ]
            await conn.execute("BEGIN")
            try:
                await conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                raise
            del self._pending[:n]  # nothing else removes from the head: one write at a time
            self.flushed += n
        finally:
            self._inflight = 0

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


def _private(path: Path, *, create: bool = True) -> None:
    """Make ``path`` readable by its owner only (creating it empty if asked and missing)."""
    if create:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o600)


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0
