"""Readers of the agents' tables: ``phase_queue`` + ``queue_config`` and ``workflow_history``.

Every reader selects ``*`` and works with the columns that exist, so an added or renamed column
never breaks it. Both known ``phase_queue`` layouts (``parent_issue`` / ``feature_id``,
``depends_on_phase`` / ``depends_on_phases``) come out carrying both names. Every value passes
through a ``Cleaner`` (a BLOB, ``9e999``, a JSON column nested deep or holding a 40-digit
number, a credential column: each becomes plain, encodable, redacted data), so one odd row
costs nothing but its odd value.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from .values import Cleaner, as_int

HISTORY_JSON_COLUMNS = (
    "cost_breakdown",
    "token_breakdown",
    "structured_input",
    # the real backend's analytics columns (JSONB in its PostgreSQL schema, JSON text in SQLite)
    "anomaly_flags",
    "optimization_recommendations",
    "similar_workflow_ids",
    "retry_reasons",
    "error_phase_distribution",
)
# Columns holding JSON: parsed before cleaning, so that a text cut past [database] max_value_bytes
# is one value inside them, never the JSON itself.
JSON_COLUMNS = frozenset({"phase_data", "depends_on_phases", *HISTORY_JSON_COLUMNS})


@dataclass(frozen=True, slots=True)
class QueueData:
    """The phase queue as the agents left it."""

    phases: list[dict[str, Any]]
    paused: bool


async def select_all(conn: aiosqlite.Connection, table: str, cleaner: Cleaner) -> list[dict[str, Any]]:
    """Return every row of ``table`` as a dict of the columns that exist, every value cleaned.

    Building and cleaning thousands of rows runs in a worker thread, not on the event loop.
    """
    async with conn.execute(f'SELECT * FROM "{table}"') as cursor:
        columns = [str(d[0]) for d in cursor.description]
        raw = await cursor.fetchall()
    return await asyncio.to_thread(clean_rows, columns, raw, cleaner)


def clean_rows(
    columns: list[str], raw: Iterable[Any], cleaner: Cleaner, json_columns: frozenset[str] = JSON_COLUMNS
) -> list[dict[str, Any]]:
    """Return rows (sequences of values in ``columns``' order) as dicts, JSON columns parsed, every value cleaned."""
    parsed = [n for n, column in enumerate(columns) if column in json_columns]
    rows = []
    for values in raw:
        row = dict(zip(columns, values, strict=True))
        for n in parsed:
            row[columns[n]] = _containers(values[n])
        rows.append(cleaner.clean(row))
    return rows


def _containers(value: Any) -> Any:
    """Return a JSON text holding an object or array parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)  # orjson stops at 1,024 levels; json.loads would recurse
        except orjson.JSONDecodeError:
            pass
    return value


async def read_queue(conn: aiosqlite.Connection, cleaner: Cleaner) -> QueueData:
    """Read ``phase_queue`` (ordered by parent issue, then phase number) and the paused flag."""
    return queue_data(await select_all(conn, "phase_queue", cleaner), await _queue_paused(conn), cleaner)


def queue_data(rows: Iterable[dict[str, Any]], paused_value: Any, cleaner: Cleaner) -> QueueData:
    """Return the queue of ``phase_queue`` rows (as ``select_all`` gives them) and ``queue_paused``'s value."""
    phases = [phase_item(row, cleaner) for row in rows]
    phases.sort(
        key=lambda p: (_sort_int(p.get("parent_issue")), _sort_int(p.get("phase_number")), str(p.get("queue_id")))
    )
    return QueueData(phases, paused_value is not None and str(paused_value).strip().lower() == "true")


PAUSED = "SELECT config_value FROM queue_config WHERE config_key = 'queue_paused'"


async def _queue_paused(conn: aiosqlite.Connection) -> Any:
    """Return the ``queue_paused`` value (None without one)."""
    try:
        async with conn.execute(PAUSED) as cursor:
            row = await cursor.fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None  # older databases have no queue_config: never paused
        raise
    return None if row is None else row[0]


def phase_item(row: dict[str, Any], cleaner: Cleaner) -> dict[str, Any]:
    """Return a PhaseQueueItem: every column, JSON columns parsed, plus ``phase`` and ``metadata``."""
    item = dict(row)
    data = _parse_json(row.get("phase_data"), cleaner)
    if isinstance(data, dict):
        item["phase_data"] = data
    metadata = data if isinstance(data, dict) else {}
    item["metadata"] = metadata
    title = metadata.get("title")
    item["phase"] = title if isinstance(title, str) and title else str(row.get("phase_number", ""))
    if "parent_issue" not in item and "feature_id" in item:
        item["parent_issue"] = item["feature_id"]
    if "depends_on_phases" in item:
        deps = _parse_json(item["depends_on_phases"], cleaner)
        item["depends_on_phases"] = deps if isinstance(deps, list) else []
        item.setdefault("depends_on_phase", item["depends_on_phases"][0] if item["depends_on_phases"] else None)
    elif "depends_on_phase" in item:
        item["depends_on_phases"] = [] if item["depends_on_phase"] is None else [item["depends_on_phase"]]
    return item


async def read_history(conn: aiosqlite.Connection, cleaner: Cleaner) -> list[dict[str, Any]]:
    """Read every ``workflow_history`` row, JSON columns parsed, newest first (parsed off the event loop)."""
    return await asyncio.to_thread(history_rows, await select_all(conn, "workflow_history", cleaner), cleaner)


class HistoryReader:
    """Read ``workflow_history`` again after a commit, fetching only the rows that are new or updated.

    Rows are kept by ``id``; a read asks for ``id`` above the highest seen or ``updated_at`` at or
    above the newest seen (same-second updates are read twice, harmlessly). Everything is read
    again when the table lacks those columns, when the row count says rows went away, and every
    ``full_every`` reads, so an update that did not touch ``updated_at`` is picked up in time.
    """

    def __init__(self, cleaner: Cleaner, *, full_every: int = 50) -> None:
        self._cleaner = cleaner
        self._full_every = full_every
        self._rows: dict[int, dict[str, Any]] | None = None
        self._max_id = 0
        self._max_updated = ""
        self._reads = 0
        self.full_reads = 0  # how many reads fetched every row (the rest fetched only changes)

    async def __call__(self, conn: aiosqlite.Connection) -> list[dict[str, Any]]:
        self._reads += 1
        columns = await _columns(conn, "workflow_history")
        if self._rows is None or not {"id", "updated_at"} <= columns or self._reads % self._full_every == 0:
            return await self._full(conn)
        async with conn.execute(
            'SELECT * FROM "workflow_history" WHERE id > ? OR updated_at >= ?', (self._max_id, self._max_updated)
        ) as cursor:
            names = [str(d[0]) for d in cursor.description]
            raw = await cursor.fetchall()
        changed = await asyncio.to_thread(history_rows, clean_rows(names, raw, self._cleaner), self._cleaner)
        for row in changed:
            key = as_int(row.get("id"))
            if key is None:  # an id that is not a number: this table is not what the reader expects
                return await self._full(conn)
            self._rows[key] = row
        if await _count(conn) != len(self._rows):  # rows went away (the merge only adds): read whole
            return await self._full(conn)
        self._note(changed)
        return await asyncio.to_thread(newest_first, list(self._rows.values()))

    async def _full(self, conn: aiosqlite.Connection) -> list[dict[str, Any]]:
        self.full_reads += 1
        rows = await read_history(conn, self._cleaner)
        keys = [as_int(row.get("id")) for row in rows]
        if all(k is not None for k in keys) and len(set(keys)) == len(keys):
            self._rows = {k: row for k, row in zip(keys, rows, strict=True) if k is not None}
            self._max_id, self._max_updated = 0, ""
            self._note(rows)
        else:
            self._rows = None  # not keyed by a unique id: read whole every time
        return rows

    def _note(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._max_id = max(self._max_id, as_int(row.get("id")) or 0)
            updated = row.get("updated_at")
            if isinstance(updated, str) and updated > self._max_updated:
                self._max_updated = updated


async def _columns(conn: aiosqlite.Connection, table: str) -> set[str]:
    async with conn.execute(f'SELECT * FROM "{table}" LIMIT 0') as cursor:
        return {str(d[0]) for d in cursor.description}


async def _count(conn: aiosqlite.Connection) -> int:
    async with conn.execute('SELECT COUNT(*) FROM "workflow_history"') as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def history_rows(rows: list[dict[str, Any]], cleaner: Cleaner) -> list[dict[str, Any]]:
    """Return ``workflow_history`` rows (as ``select_all`` gives them) with JSON columns parsed, newest first."""
    for row in rows:
        for column in HISTORY_JSON_COLUMNS:
            if isinstance(row.get(column), str):  # a JSON scalar, or not JSON
                parsed = _parse_json(row[column], cleaner)
                if parsed is not None:
                    row[column] = parsed
    return newest_first(rows)


def newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first: by created_at (else start_time), then by id."""
    rows.sort(key=lambda r: _sort_int(r.get("id")), reverse=True)
    rows.sort(key=lambda r: str(r.get("created_at") or r.get("start_time") or ""), reverse=True)
    return rows


def _parse_json(value: Any, cleaner: Cleaner) -> Any:
    if isinstance(value, dict | list):
        return value  # parsed and cleaned already (``_rows``)
    if not isinstance(value, str):
        return None
    try:
        return cleaner.clean(orjson.loads(value))  # orjson stops at 1,024 levels; json.loads would recurse
    except orjson.JSONDecodeError:
        return None


def _sort_int(value: Any) -> tuple[int, int]:
    """Sort key putting numbers in order and everything else last."""
    number = as_int(value)
    return (1, 0) if number is None else (0, number)
