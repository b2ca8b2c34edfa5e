"""The agents' tables in PostgreSQL (the real tac-webbuilder's database): read-only, hinted, reconnecting.

``PostgresWatch`` is the PostgreSQL twin of ``SqliteWatch``: it yields ``{reader name:
ReadResult}`` first at once and then after each change, from the same tables, as the same plain
data (``NUMERIC`` as numbers, ``TIMESTAMP`` as ISO text, ``JSONB`` parsed), so every channel is
the same whichever database holds the rows.

Read-only: every session runs with ``default_transaction_read_only``, and only ``SELECT`` on the
three tables is ever sent; nothing is created. A change is seen by a cheap hint: the cluster's
WAL insert position (``pg_current_wal_insert_lsn()``), asked every ``poll_interval``; the tables
are read again only when it moved (or when a ``LISTEN`` channel of ``listen`` was notified).
The connection is made again with backoff after any failure; the last data stays, and
``health`` says why. The password never appears in a message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from .backoff import Backoff
from .database import PAUSED, QueueData, clean_rows, history_rows, queue_data
from .sqlite import ReadResult, SqliteHealth
from .urls import safe_url
from .values import Cleaner

logger = logging.getLogger(__name__)
PgQuery = Callable[[asyncpg.Connection], Awaitable[Any]]
HINT = "SELECT pg_current_wal_insert_lsn()::text"
RETRY = Backoff(0.5, 5.0)  # between attempts to reach the database: 0.5 s doubling, then every 5 s


def plain(value: Any) -> Any:
    """Return a PostgreSQL value as SQLite would hold it: numbers, ISO text, text, bytes."""
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


async def select_all(conn: asyncpg.Connection, table: str, cleaner: Cleaner) -> list[dict[str, Any]]:
    """Return every row of ``table`` as a dict of the columns that exist, every value plain and cleaned."""
    statement = await conn.prepare(f'SELECT * FROM "{table}"')
    columns = [attribute.name for attribute in statement.get_attributes()]
    records = await statement.fetch()
    raw = [tuple(plain(v) for v in record.values()) for record in records]
    return await asyncio.to_thread(clean_rows, columns, raw, cleaner)


async def read_queue(conn: asyncpg.Connection, cleaner: Cleaner) -> QueueData:
    """Read ``phase_queue`` (ordered by parent issue, then phase number) and the paused flag."""
    try:
        paused = await conn.fetchval(PAUSED)
    except asyncpg.UndefinedTableError:
        paused = None  # no queue_config: never paused
    return queue_data(await select_all(conn, "phase_queue", cleaner), paused, cleaner)


async def read_history(conn: asyncpg.Connection, cleaner: Cleaner) -> list[dict[str, Any]]:
    """Read every ``workflow_history`` row, JSON columns parsed, newest first."""
    return await asyncio.to_thread(history_rows, await select_all(conn, "workflow_history", cleaner), cleaner)


class PostgresWatch:
    """Yield ``{reader name: ReadResult}`` for a PostgreSQL database each time it changed (see the module)."""

    def __init__(
        self,
        url: str,
        readers: Mapping[str, PgQuery],
        *,
        password: str | None = None,
        poll_interval: float = 0.25,
        listen: Sequence[str] = (),
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.label = safe_url(url)
        self.health = SqliteHealth()
        self._readers = dict(readers)
        self._password = password
        self._poll_interval = poll_interval
        self._listen = tuple(listen)
        self._timeout = connect_timeout
        self._notified = asyncio.Event()

    def failed(self, read: Mapping[str, ReadResult]) -> bool:
        """Return whether any reader failed in ``read``."""
        return any(result.error is not None for result in read.values())

    async def changes(self) -> AsyncGenerator[dict[str, ReadResult], None]:
        """Yield every reader's result: at once (errors included), then after each change; forever."""
        attempt = 0
        while True:
            try:
                conn = await self._connect()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                attempt += 1
                if self._trouble(f"cannot connect to {self.label}: {_why(exc)}"):
                    yield self._failed_parts()
                await RETRY.pause(attempt)
                continue
            attempt = 0
            try:
                async for read in self._follow(conn):
                    yield read
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if self._trouble(f"{self.label}: {_why(exc)}"):
                    yield self._failed_parts()
            finally:
                await _close(conn)

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self.url,
            password=self._password,
            timeout=self._timeout,
            server_settings={"default_transaction_read_only": "on", "application_name": "adw-broadcaster"},
        )
        for channel in self._listen:
            await conn.add_listener(channel, self._on_notify)
        return conn

    def _on_notify(self, *_: Any) -> None:
        self._notified.set()

    async def _follow(self, conn: asyncpg.Connection) -> AsyncGenerator[dict[str, ReadResult], None]:
        mark = await conn.fetchval(HINT)
        yield await self._read(conn)
        while True:
            try:
                await asyncio.wait_for(self._notified.wait(), self._poll_interval)
            except TimeoutError:
                pass
            notified = self._notified.is_set()
            self._notified.clear()
            now = await conn.fetchval(HINT)
            if notified or now != mark:
                mark = now
                yield await self._read(conn)

    async def _read(self, conn: asyncpg.Connection) -> dict[str, ReadResult]:
        results: dict[str, ReadResult] = {}
        for name, read in self._readers.items():
            try:
                results[name] = ReadResult(await read(conn))
            except asyncpg.PostgresError as exc:  # a missing table or column, no rights: this reader only
                results[name] = ReadResult(error=f"{self.label}: {_why(exc)}")
        errors = {name: r.error for name, r in results.items() if r.error is not None}
        if not self.health.ok or errors != self.health.errors:
            logger.info("database %s: %s", self.label, "; ".join(errors.values()) or "reading")
        self.health.ok, self.health.transient, self.health.message = True, False, f"reading {self.label}"
        self.health.errors = errors
        self.health.reads += 1
        return results

    def _trouble(self, message: str) -> bool:
        """Note a failure of the whole database; return whether it is news (then the parts are reported failed)."""
        news = self.health.ok or self.health.message != message
        if news:
            logger.warning("database: %s (keeping the last data; retrying)", message)
        self.health.ok, self.health.message = False, message
        return news

    def _failed_parts(self) -> dict[str, ReadResult]:
        return {name: ReadResult(error=self.health.message) for name in self._readers}


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        conn.terminate()


__all__ = ["PostgresWatch", "read_history", "read_queue"]
