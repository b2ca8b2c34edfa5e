"""The cluster view's source: every node's streams, read with blocking ``XREAD`` on one connection.

``changes()`` yields a ``Batch`` per read: the newest data of each (node, channel) the read
brought, and after each look at the node records which nodes are alive and which are not. Which
streams it reads follows from the bus itself: every node in ``adwb:nodes`` not forgotten, its
six shared channels, and an ``adw-state`` stream for each ADW its newest monitor lists. A stream
it starts reading is read from its newest entry (a newest-state system needs no history); so is
every stream after a reconnect, which also covers a Redis that came back empty.

Bad data from the bus (a malformed record or entry, a node name or ADW id that is not one, a key
of the wrong type) is logged once and skipped: it costs that entry, never the view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..channels import adw_state_channel
from .bus import (
    NODE_RECORD,
    NODES,
    BadEntry,
    Record,
    checked_items,
    decode_data,
    decode_record,
    safe_url,
    stream_key,
)
from .publisher import RETRY

logger = logging.getLogger(__name__)
SHARED = ("workflows", "adw-monitor", "queue", "workflow-history", "system-status", "webhook-status")
READ_COUNT = 100  # entries per stream per read; only the newest of them counts
MAX_LOGGED = 1000  # distinct bad-data messages remembered (each logged once); past it, counted only


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read brought: the newest data per (node, channel), and the nodes' liveness if it was looked at."""

    data: dict[tuple[str, str], Any] = field(default_factory=dict)
    alive: frozenset[str] | None = None
    """After a look at the records: the nodes whose record exists (None: not looked at)."""
    gone: frozenset[str] = frozenset()
    """With ``alive``: the nodes whose record expired and that are not yet forgotten."""
    problem: str | None = None
    """Set when Redis cannot be reached: the view keeps its last known state."""


class Reader:
    """Read every node's streams from Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        forget_after: float,
        scan_interval: float,
        on_state: Callable[[str, str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._forget_after = forget_after
        self._scan_interval = scan_interval
        self._on_state = on_state
        self._clock = clock
        self._streams: dict[str, bytes] = {}  # stream key -> id of the last entry read
        self._channel_of: dict[str, tuple[str, str]] = {}  # stream key -> (node, channel)
        self._held: dict[str, frozenset[str]] = {}  # node -> ADW ids its newest monitor lists
        self._nodes: frozenset[str] = frozenset()  # nodes read (alive or not yet forgotten)
        self._refused: set[str] = set()  # keys that are not streams: not read again until a reconnect
        self._logged: set[str] = set()
        self.bad_entries = 0
        self.state: tuple[str, str] = ("degraded", f"connecting to {safe_url(url)}")

    async def changes(self) -> AsyncGenerator[Batch, None]:
        """Yield a Batch per read, forever; reconnect with backoff while Redis is away."""
        attempt = 0
        while True:
            client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=10)
            try:
                await client.ping()
                self._streams = dict.fromkeys(self._streams, b"")  # reread each from its newest entry
                self._refused.clear()
                attempt = 0
                async for batch in self._serve(client):
                    yield batch
            except (RedisError, OSError) as exc:
                delay = RETRY[min(attempt, len(RETRY) - 1)]
                attempt += 1
                problem = f"cannot reach {safe_url(self.url)}: {exc}; showing the last known state, retrying"
                self._set("error", problem)
                yield Batch(problem=problem)
                await asyncio.sleep(delay)
            finally:
                await client.aclose()

    async def _serve(self, client: aioredis.Redis) -> AsyncGenerator[Batch, None]:
        next_scan = 0.0
        while True:
            now = time.monotonic()
            if now >= next_scan:
                yield await self._scan(client)
                next_scan = time.monotonic() + self._scan_interval
                continue
            if not self._streams:
                await asyncio.sleep(max(0.0, next_scan - now))
                continue
            block = max(1, int((next_scan - now) * 1000))
            try:
                reply = await client.xread(self._streams, count=READ_COUNT, block=block)  # type: ignore[arg-type]
            except ResponseError as exc:  # a key that is not a stream fails the whole read: find it, drop it
                await self._drop_wrong_keys(client, str(exc))
                continue
            batch = self._take(_pairs(reply))
            fresh = await self._start_new_streams(client)  # ADWs a monitor in this read named for the first time
            batch.data.update(fresh)
            if batch.data:
                yield batch

    async def _scan(self, client: aioredis.Redis) -> Batch:
        """Look at the node records; start reading new nodes; return the nodes' liveness (and their first data)."""
        records: dict[str, Record] = {}
        for name, raw in (await client.hgetall(NODES)).items():
            try:
                record = decode_record(name, raw)
            except BadEntry as exc:
                self._bad(str(exc))
                continue
            records[record.name] = record
        names = sorted(records)
        exists = await client.mget([NODE_RECORD + n for n in names]) if names else []
        alive = frozenset(n for n, value in zip(names, exists, strict=True) if value is not None)
        now = self._clock()
        gone = frozenset(n for n in names if n not in alive and now - records[n].last_seen <= self._forget_after)
        nodes = alive | gone
        for node in self._nodes - nodes:  # forgotten: stop reading its streams
            self._held.pop(node, None)
            for key in [k for k, (n, _) in self._channel_of.items() if n == node]:
                self._streams.pop(key, None)
                self._channel_of.pop(key, None)
        self._nodes = nodes
        for node in sorted(nodes):
            for channel in SHARED:
                self._want(node, channel)
        data = await self._start_new_streams(client)
        message = f"reading {len(alive)} node(s) from {safe_url(self.url)}" + _also(gone)
        if self.bad_entries:
            message += f"; skipped {self.bad_entries} bad entries (see the log)"
        self._set("degraded" if self.bad_entries else "healthy", message)
        return Batch(data, alive=alive, gone=gone)

    def _want(self, node: str, channel: str) -> None:
        key = stream_key(node, channel)
        if key not in self._channel_of and key not in self._refused:
            self._channel_of[key] = (node, channel)
            self._streams[key] = b""  # not started: read from its newest entry

    async def _start_new_streams(self, client: aioredis.Redis) -> dict[tuple[str, str], Any]:
        """Read the newest entry of each stream not started yet (and of those its monitors name, in turn)."""
        data: dict[tuple[str, str], Any] = {}
        while new := [k for k, last in self._streams.items() if not last]:
            async with client.pipeline(transaction=False) as pipe:
                for key in new:
                    pipe.xrevrange(key, count=1)
                replies = await pipe.execute(raise_on_error=False)
            for key, reply in zip(new, replies, strict=True):
                if isinstance(reply, Exception):
                    self._bad(f"{key}: {reply}")
                    self._refused.add(key)
                    self._streams.pop(key)
                    self._channel_of.pop(key)
                    continue
                self._streams[key] = b"0-0"  # an empty stream is read from its start once it gets entries
                data.update(self._take([(key, reply or [])]).data)
        return data

    def _take(self, pairs: Iterable[tuple[Any, Any]]) -> Batch:
        """Decode the entries of a read: keep the newest of each stream; note the ADWs monitors list."""
        data: dict[tuple[str, str], Any] = {}
        for raw_key, entries in pairs:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            where = self._channel_of.get(key)
            if where is None or not entries:
                continue
            newest = entries[-1]  # XREAD gives them oldest first; XREVRANGE gives just the one
            self._streams[key] = newest[0]
            node, channel = where
            try:
                value, problems = checked_items(node, channel, decode_data(node, channel, newest[1]))
                orjson.dumps(value)  # nested past what can be encoded again: refused here, not in the merge
            except BadEntry as exc:
                self._bad(str(exc))
                continue
            except orjson.JSONEncodeError as exc:
                self._bad(f"{key}: data cannot be encoded again ({exc})")
                continue
            for problem in problems:
                self._bad(problem)
            data[where] = value
            if channel == "adw-monitor":
                self._hold(node, value)
        return Batch(data)

    def _hold(self, node: str, monitor: Any) -> None:
        """Read the ``adw-state`` stream of every ADW ``node``'s monitor lists (and stop those it dropped)."""
        items = monitor.get("workflows") if isinstance(monitor, dict) else None
        held = frozenset(item["adw_id"] for item in items) if isinstance(items, list) else frozenset()  # checked
        for adw_id in self._held.get(node, frozenset()) - held:
            key = stream_key(node, adw_state_channel(adw_id))
            self._streams.pop(key, None)
            self._channel_of.pop(key, None)
        self._held[node] = held
        for adw_id in held:
            self._want(node, adw_state_channel(adw_id))

    async def _drop_wrong_keys(self, client: aioredis.Redis, error: str) -> None:
        keys = list(self._streams)
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            kinds = await pipe.execute()
        for key, kind in zip(keys, kinds, strict=True):
            if kind not in (b"stream", b"none", "stream", "none"):
                self._bad(f"{key} is a {kind.decode() if isinstance(kind, bytes) else kind}, not a stream ({error})")
                self._refused.add(key)
                self._streams.pop(key)
                node, channel = self._channel_of.pop(key)
                if channel == "adw-monitor":
                    self._hold(node, None)

    def _bad(self, message: str) -> None:
        """Log a bad entry once: a record or key still bad at the next look is the same one, not another."""
        if message in self._logged:
            return
        self.bad_entries += 1
        if len(self._logged) < MAX_LOGGED:
            self._logged.add(message)
            logger.warning("cluster view: skipped bad data from the bus: %s", message)

    def _set(self, level: str, message: str) -> None:
        if (level, message) != self.state:
            if level == "error":
                logger.warning("cluster view: %s", message)
            elif self.state[0] == "error":
                logger.info("cluster view: %s", message)
            self.state = (level, message)
            self._on_state(level, message)


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    """Return an XREAD reply (RESP2: a list of [key, entries]) as (key, entries) pairs."""
    return [(pair[0], pair[1]) for pair in reply or ()]


def _also(gone: frozenset[str]) -> str:
    return f"; not heard from: {', '.join(sorted(gone))}" if gone else ""
