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
from .database import JSON_COLUMNS, PAUSED, QueueData, clean_rows, history_rows, newest_first, queue_data
from .sqlite import ReadResult, SqliteHealth
from .tasks import wait_set
from .urls import safe_url
from .values import Cleaner, as_int

logger = logging.getLogger(__name__)
PgQuery = Callable[[asyncpg.Connection], Awaitable[Any]]
HINT = "SELECT pg_current_wal_insert_lsn()::text"
RETRY = Backoff(0.5, 5.0)  # between attempts to reach the database: 0.5 s doubling, then every 5 s
UNCHANGED: Any = type("Unchanged", (), {"__repr__": lambda _: "UNCHANGED"})()
"""What a reader returns when its rows did not move: that part is left out of the change."""
VERSIONS = 'SELECT id, xmin::text FROM "workflow_history"'


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
    records = await statement.fetch()
    raw = [tuple(plain(v) for v in record.values()) for record in records]
    columns, json_columns = _typed(statement)
    return await asyncio.to_thread(clean_rows, columns, raw, cleaner, json_columns)


def _typed(statement: Any) -> tuple[list[str], frozenset[str]]:
    """Return a statement's column names, and those holding JSON (known by name, or ``json``/``jsonb`` typed)."""
    attributes = statement.get_attributes()
    typed = {a.name for a in attributes if a.type.name in ("json", "jsonb")}
    return [a.name for a in attributes], JSON_COLUMNS | typed


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


class HistoryReader:
    """Read ``workflow_history`` after the database moved, fetching only the rows whose version moved.

    The WAL position moves for a write to any table of the cluster (the real backend writes its
    hook events and logs all day), and reading 10,000 history rows whole takes ~400 ms. So each
    read first asks every row's ``id`` and ``xmin`` (the transaction that wrote this version of
    the row; ~4 ms at 10,000 rows): the same as last time gives ``UNCHANGED``; otherwise only
    new and rewritten rows are fetched and rows gone are dropped, in one repeatable-read snapshot.
    A new connection, or a table without a unique numeric ``id``, is read whole.
    """

    def __init__(self, cleaner: Cleaner) -> None:
        self._cleaner = cleaner
        self._conn: asyncpg.Connection | None = None
        self._versions: dict[int, str] | None = None
        self._rows: dict[int, dict[str, Any]] = {}
        self.full_reads = 0
        self.fetched = 0  # rows fetched by reads that were not whole

    async def __call__(self, conn: asyncpg.Connection) -> Any:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            versions = await self._versions_of(conn)
            if conn is not self._conn or versions is None or self._versions is None:
                self._conn = conn
                return await self._whole(conn, versions)
            if versions == self._versions:
                return UNCHANGED
            moved = [key for key, version in versions.items() if self._versions.get(key) != version]
            for gone in self._versions.keys() - versions.keys():
                del self._rows[gone]
            statement = await conn.prepare('SELECT * FROM "workflow_history" WHERE id = ANY($1::bigint[])')
            rows = await _rows_of(statement, self._cleaner, moved)
        self.fetched += len(rows)
        for row in rows:
            self._rows[as_int(row["id"]) or 0] = row
        self._versions = versions
        return await asyncio.to_thread(newest_first, list(self._rows.values()))

    async def _versions_of(self, conn: asyncpg.Connection) -> dict[int, str] | None:
        """Return every row's id and version, or None when the rows have no unique numeric id."""
        try:
            async with conn.transaction():  # a savepoint: the snapshot's transaction survives a missing id
                records = await conn.fetch(VERSIONS)
        except (asyncpg.UndefinedColumnError, asyncpg.DatatypeMismatchError):
            return None
        versions = {record[0]: record[1] for record in records if isinstance(record[0], int)}
        return versions if len(versions) == len(records) else None

    async def _whole(self, conn: asyncpg.Connection, versions: dict[int, str] | None) -> list[dict[str, Any]]:
        self.full_reads += 1
        rows = await read_history(conn, self._cleaner)
        self._versions, self._rows = None, {}
        if versions is not None:
            self._rows = {as_int(row.get("id")) or 0: row for row in rows}
            self._versions = versions if self._rows.keys() == versions.keys() else None
        return rows


async def _rows_of(statement: Any, cleaner: Cleaner, ids: list[int]) -> list[dict[str, Any]]:
    columns, json_columns = _typed(statement)
    raw = [tuple(plain(v) for v in record.values()) for record in await statement.fetch(ids)]
    return await asyncio.to_thread(lambda: history_rows(clean_rows(columns, raw, cleaner, json_columns), cleaner))


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
            await wait_set(self._notified, self._poll_interval)
            notified = self._notified.is_set()
            self._notified.clear()
            now = await conn.fetchval(HINT)
            if notified or now != mark:
                mark = now
                read = await self._read(conn)
                if read:  # a reader whose rows did not move leaves its part out; none moved: nothing
                    yield read

    async def _read(self, conn: asyncpg.Connection) -> dict[str, ReadResult]:
        results: dict[str, ReadResult] = {}
        for name, read in self._readers.items():
            try:
                data = await read(conn)
                if data is not UNCHANGED:
                    results[name] = ReadResult(data)
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


__all__ = ["UNCHANGED", "HistoryReader", "PostgresWatch", "read_history", "read_queue"]
