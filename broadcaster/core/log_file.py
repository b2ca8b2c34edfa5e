"""Opening the durable event log's file: trust checks, schema, seq floor, redaction, what it holds.

A file that fails ``PRAGMA quick_check`` (or is not a database) is moved aside and a new history
(a new epoch) begins; one held by another service is a start-up error. After an unclean stop the
*seq floor* is raised ``CRASH_SEQ_GAP`` above every stored seq (and the previous floor) and made
durable before anything is served. A log written under another redaction rule is scrubbed once.
The file, its WAL and SHM are 0600: they hold what the agents wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import orjson

from sources.sqlite import is_lock
from sources.values import Cleaner

from ..errors import StartupError
from .events import Event
from .log_rows import COLUMNS, RowReader
from .store import Loaded

logger = logging.getLogger(__name__)

CRASH_SEQ_GAP = 10_000  # far more events than one unflushed batch can hold for one channel


class _Unusable(Exception):
    """The log file cannot be trusted (it failed quick_check); it is moved aside."""


@dataclass(frozen=True, slots=True)
class Opened:
    """An open log: its connection, what it holds, where each channel's unbroken run starts, the next row id."""

    conn: aiosqlite.Connection
    loaded: Loaded
    starts: dict[str, int]
    next_id: int


async def open_log(path: Path, *, cleaner: Cleaner, reader: RowReader, clock: Callable[[], float]) -> Opened:
    """Open (or create) the log at ``path``; an unreadable file is kept aside and a new history begins."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _must_be_a_file(path)
        return await _open(path, cleaner, reader)
    except OSError as exc:  # a directory in the way, no permission, a read-only disk, ...
        raise StartupError(f"event log {path}: {exc.strerror or exc} (see [event_log] path)") from None
    except (sqlite3.DatabaseError, _Unusable) as exc:
        if isinstance(exc, sqlite3.DatabaseError):
            if is_lock(exc):
                raise StartupError(
                    f"event log {path} is in use by another adw-broadcaster (give each its own [event_log] path)"
                ) from None
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                raise StartupError(f"event log {path}: {exc}") from None
        aside = path.with_name(f"{path.name}.unreadable-{int(clock())}")
        logger.error("event log %s is unreadable (%s); moved to %s, starting a new history", path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(Path(f"{aside}{suffix}"))
        return await _open(path, cleaner, reader)


async def _open(path: Path, cleaner: Cleaner, reader: RowReader) -> Opened:
    _private(path)
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=0.5)
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
            " timestamp REAL NOT NULL, base INTEGER, UNIQUE (channel, seq))"
        )
        columns = [str(row[1]) for row in await conn.execute_fetchall("PRAGMA table_info(events)")]
        if "base" not in columns:  # a log written before deltas: every row holds its whole data
            await conn.execute("ALTER TABLE events ADD COLUMN base INTEGER")
        for suffix in ("-wal", "-shm"):
            _private(Path(f"{path}{suffix}"), create=False)
        meta = {str(k): str(v) for k, v in await conn.execute_fetchall("SELECT key, value FROM meta")}
        epoch = meta.get("epoch") or secrets.token_hex(8)
        clean = meta.get("running", "0") != "1"
        floor = _int(meta.get("seq_floor"))
        if meta.get("redaction") != cleaner.rule:
            await _scrub(conn, path, cleaner)
        last = await _last_events(conn, reader)
        if not clean:
            [(highest,)] = list(await conn.execute_fetchall("SELECT COALESCE(MAX(seq), 0) FROM events"))
            floor = max(floor, int(highest)) + CRASH_SEQ_GAP
        # Durable before anything is served: a second crash must not hand out these seqs again.
        await conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("epoch", epoch), ("running", "1"), ("seq_floor", str(floor))],
        )
        # The start of each channel's unbroken run of seqs, ending at its newest event.
        starts: dict[str, int] = {}
        for channel, start in await conn.execute_fetchall(
            "SELECT channel, MAX(CASE WHEN prev IS NULL OR prev != seq - 1 THEN seq END) FROM"
            " (SELECT channel, seq, LAG(seq) OVER (PARTITION BY channel ORDER BY seq) AS prev FROM events)"
            " GROUP BY channel"
        ):
            starts[str(channel)] = int(start)
        [(max_id,)] = list(await conn.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM events"))
        next_id = int(max_id) + 1
    except BaseException:
        await conn.close()
        raise
    if not clean:
        logger.warning(
            "the last run of %s did not stop cleanly: up to one batch of events may be lost; "
            "seq numbers continue above %d",
            path,
            floor,
        )
    return Opened(conn, Loaded(epoch, last, clean, floor), starts, next_id)


async def _scrub(conn: aiosqlite.Connection, path: Path, cleaner: Cleaner) -> None:
    """Redact every stored event under the current rule, once, and leave no old bytes behind.

    A log written before redaction existed (or under other keys) holds credentials on disk;
    redacting on read would leave them in the file. ``secure_delete`` zeroes what the
    rewrite frees, and the WAL is truncated after.
    """
    await conn.execute("PRAGMA secure_delete=ON")
    changed, last_id = 0, 0
    while True:
        rows = list(
            await conn.execute_fetchall("SELECT id, data FROM events WHERE id > ? ORDER BY id LIMIT 500", (last_id,))
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
            cleaned = cleaner.clean(value)
            if cleaned != value:
                updates.append((orjson.dumps(cleaned, option=orjson.OPT_NON_STR_KEYS), last_id))
        if updates:
            await conn.executemany("UPDATE events SET data = ? WHERE id = ?", updates)
            changed += len(updates)
    await conn.execute("INSERT OR REPLACE INTO meta VALUES ('redaction', ?)", (cleaner.rule,))
    if changed:
        await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        logger.warning("event log %s: redacted %d stored events written under another redaction rule", path, changed)


async def _last_events(conn: aiosqlite.Connection, reader: RowReader) -> dict[str, Event]:
    """Return each channel's newest event; one that cannot be read stands as unknown data."""
    newest = await conn.execute_fetchall(
        f"SELECT {', '.join('e.' + c for c in COLUMNS)} FROM events e"
        " JOIN (SELECT channel, MAX(seq) AS seq FROM events GROUP BY channel) m"
        " ON e.channel = m.channel AND e.seq = m.seq"
    )
    read = {event.channel: event for _, event in await reader.rebuild(conn, newest)}
    last: dict[str, Event] = {}
    for row in newest:
        channel = str(row[1])
        if channel in read:
            last[channel] = read[channel]
            continue
        try:
            spec = reader.catalog.spec_of(channel)
        except KeyError:
            continue  # a channel this version does not know: nothing to continue
        # Keep the seq (never reused); an empty digest makes the next read of the source a change.
        last[channel] = Event(channel, int(row[2]), spec.type, spec.empty(), "", float(row[6]))
    return last


def _must_be_a_file(path: Path) -> None:
    """Raise ``StartupError`` if ``path`` is there but is not a regular file (opening a FIFO would hang)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"))
        kind = next((name for test, name in (*kinds, (stat.S_ISBLK, "a device")) if test(mode)), "not a file")
        raise StartupError(f"event log {path} is {kind}: [event_log] path must name a file of its own")


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
