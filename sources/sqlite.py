"""Watch a SQLite file the agents write: read it again only when another connection committed.

The connection is read-only (``mode=ro``) and in autocommit mode, so no read transaction is
held between polls. Every ``poll_interval`` (sooner when the file or its ``-wal`` changes on
disk) ``PRAGMA data_version`` is compared with the last value; the readers run only when it
moved, when the connection was (re)opened, or while a reader is still failing. A missing
file, a locked database, a missing table or a renamed column is reported, never raised: the
consumer keeps its last good data and the source recovers on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from watchfiles import awatch

from .tasks import cancel_and_wait, wait_set

logger = logging.getLogger(__name__)

Query = Callable[[aiosqlite.Connection], Awaitable[Any]]
NOT_READ_YET = "not read yet"
BUSY_TIMEOUT = 0.1  # seconds a query waits on a writer's lock before we report it and retry next poll


@dataclass(frozen=True, slots=True)
class ReadResult:
    """One reader's outcome: its data, or why it failed (then data is None)."""

    data: Any = None
    error: str | None = None


@dataclass(slots=True)
class SqliteHealth:
    """How the watch is doing, for system status."""

    ok: bool = False
    transient: bool = False  # the failure is a writer's lock, which passes by itself
    message: str = NOT_READ_YET
    errors: dict[str, str] = field(default_factory=dict)  # reader name -> why it fails
    reads: int = 0


class SqliteWatch:
    """Yield ``{reader name: ReadResult}`` for a database file each time it changed."""

    def __init__(
        self,
        path: Path,
        readers: Mapping[str, Query],
        *,
        poll_interval: float = 0.25,
        file_hint: bool = True,
        text_factory: Callable[[bytes], str] = lambda raw: raw.decode("utf-8", errors="replace"),
    ) -> None:
        self.path = path.absolute()
        self.label = str(self.path)  # how system status and the logs name it
        self._text_factory = text_factory
        self.health = SqliteHealth()
        self._readers = dict(readers)
        self._poll_interval = poll_interval
        self._file_hint = file_hint
        self._conn: aiosqlite.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._version: int | None = None
        self._wake = asyncio.Event()
        self._transient: set[str] = set()  # readers that failed on a lock: retried without a commit

    async def changes(self) -> AsyncGenerator[dict[str, ReadResult], None]:
        """Yield every reader's result: first at once (errors included), then after each commit.

        A failure of the whole file (missing, locked, not a database) is yielded once as failed
        parts when it starts, and an empty dict when it clears without new data, so whoever
        shows the source's health hears of both. Failed parts carry no data: keep the last.
        """
        hint = asyncio.create_task(self._watch_file(), name=f"hint {self.path.name}") if self._file_hint else None
        try:
            first = await self._poll(force=True)
            yield first if first is not None else self._failed_parts()
            while True:
                await wait_set(self._wake, self._poll_interval)
                self._wake.clear()
                parts = await self._poll(force=bool(self._transient))
                if parts is not None:
                    yield parts
        finally:
            try:
                if hint is not None:
                    await cancel_and_wait(hint)  # re-raises our own cancellation: close in a finally
            finally:
                await self._close()

    def _failed_parts(self) -> dict[str, ReadResult]:
        return {name: ReadResult(error=self.health.message) for name in self._readers}

    def failed(self, read: Mapping[str, ReadResult]) -> bool:
        """Return whether any reader failed in ``read``."""
        return any(result.error is not None for result in read.values())

    async def _poll(self, *, force: bool) -> dict[str, ReadResult] | None:
        """Return fresh parts if the database changed (or ``force``), else None."""
        try:
            conn, reopened = await self._ensure_open()
            async with conn.execute("PRAGMA data_version") as cursor:
                row = await cursor.fetchone()
            version = row[0] if row else None
        except sqlite3.Error as exc:
            return self._fail(_describe(exc, self.path), transient=is_lock(exc))
        except OSError as exc:
            return self._fail(f"{self.path}: {exc.strerror or exc}", transient=False)
        if not (reopened or force or version != self._version):
            if self.health.ok:
                return None
            self._succeed()  # e.g. a lock was released without a commit: nothing new to read
            return {}
        self._version = version
        parts = {name: await self._run(conn, name, read) for name, read in self._readers.items()}
        self.health.reads += 1
        self._succeed()
        return parts

    async def _run(self, conn: aiosqlite.Connection, name: str, read: Query) -> ReadResult:
        try:
            data = await read(conn)
        except sqlite3.Error as exc:
            error = _describe(exc, self.path)
            if is_lock(exc):
                self._transient.add(name)
            if self.health.errors.get(name) != error:
                logger.warning("%s: %s", name, error)
            self.health.errors[name] = error
            return ReadResult(error=error)
        self._transient.discard(name)
        if name in self.health.errors:
            logger.info("%s: readable again", name)
            del self.health.errors[name]
        return ReadResult(data)

    async def _ensure_open(self) -> tuple[aiosqlite.Connection, bool]:
        """Return the connection, opening it (again if the file was replaced), and whether it is new."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            await self._close()
            raise sqlite3.OperationalError("unable to open database file") from None
        identity = (st.st_dev, st.st_ino)
        if self._conn is not None and identity == self._identity:
            return self._conn, False
        await self._close()
        self._conn = await aiosqlite.connect(
            f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
        )
        self._conn.text_factory = self._text_factory
        self._identity = identity
        return self._conn, True

    def _succeed(self) -> None:
        if not self.health.ok and self.health.message != NOT_READ_YET:  # a recovery, not the first read
            logger.info("%s: readable again", self.path)
        self.health.ok = True
        self.health.transient = False
        self.health.message = "ok" if not self.health.errors else "; ".join(sorted(set(self.health.errors.values())))

    def _fail(self, message: str, *, transient: bool) -> dict[str, ReadResult] | None:
        """Record a failure of the whole file; return failed parts if it is news, else None."""
        news = self.health.ok or self.health.message != message
        if news:
            logger.warning("%s", message)
        self.health.ok = False
        self.health.transient = transient
        self.health.message = message
        return self._failed_parts() if news else None

    async def _close(self) -> None:
        conn, self._conn, self._identity, self._version = self._conn, None, None, None
        if conn is not None:
            try:
                await conn.close()
            except sqlite3.Error as exc:
                logger.debug("closing %s: %s", self.path, exc)

    async def _watch_file(self) -> None:
        """Wake the poll loop as soon as the file or its journal changes on disk."""
        names = {self.path.name, f"{self.path.name}-wal", f"{self.path.name}-journal"}
        directory = self.path.parent
        while True:
            if not directory.is_dir():
                await asyncio.sleep(1.0)
                continue
            try:
                async for _ in awatch(
                    directory,
                    watch_filter=lambda _change, p: os.path.basename(p) in names,
                    debounce=50,
                    step=10,
                    recursive=False,
                ):
                    self._wake.set()
            except FileNotFoundError:
                pass
            except Exception as exc:  # the hint is an optimisation; polling carries on without it
                logger.debug("file hint for %s stopped: %s", self.path, exc)
                return
            await asyncio.sleep(1.0)


def is_lock(exc: sqlite3.Error) -> bool:
    """Return whether ``exc`` means another connection holds a lock (it passes by itself)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _describe(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if text == "unable to open database file":
        return f"{path}: database file not found or not readable"
    if is_lock(exc):
        return f"{path}: database is locked by a writer"
    return f"{path}: {text}"
