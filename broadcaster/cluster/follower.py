"""The cluster view's source: every node's channels, followed with blocking ``XREAD`` on one connection.

``changes()`` yields a ``Batch`` per read: the newest data of each (node, channel) the read
brought, and after each look at the node records which nodes are alive and which are not.
The read follows each node's changes index (``bus``): a blocking ``XREAD`` over those few
streams, then one pipelined round trip for the newest entry of each channel they name. Which
channels it follows comes from the bus itself: every node in ``adwb:nodes`` not forgotten, its
six shared channels, and the ``adw-state`` of each ADW its newest monitor lists. A node it starts
following (a new one, or every one after a reconnect: that also covers a Redis that came back
empty) is read whole, newest entry of each channel; so is a node whose index shows a gap.

Which nodes are alive, gone or in trouble is ``liveness``'s to judge, on the view's own clock.

Bad data from the bus (a malformed record or entry, a node name or ADW id that is not one, a key
of the wrong type) is logged once and skipped: it costs that entry, never the view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from ..channels.specs import adw_state_channel, spec_of
from ..core.snapshot import digest
from .backplane import Backplane, Refused, StreamEntry, Unreachable
from .bus import (
    CHANGES,
    NODE_RECORD,
    NODES,
    BadEntry,
    Record,
    changes_key,
    checked_items,
    decode_change,
    decode_data,
    decode_record,
    entry_digest,
    stream_key,
)
from .liveness import Liveness
from .publisher import RETRY

logger = logging.getLogger(__name__)
SHARED = ("workflows", "adw-monitor", "queue", "workflow-history", "system-status", "webhook-status")
INDEX_COUNT = 1000  # changes-index entries per node per read
MAX_LOGGED = 1000  # distinct bad-data messages remembered (each logged once); past it, counted only


class Newest(NamedTuple):
    """A node's newest data of a channel, and its digest (clock-derived fields left out)."""

    data: Any
    digest: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read brought: the newest data per (node, channel), and the nodes' liveness if it was looked at."""

    data: dict[tuple[str, str], Newest] = field(default_factory=dict)
    alive: frozenset[str] | None = None
    """After a look at the records: the nodes whose record exists (None: not looked at)."""
    gone: frozenset[str] = frozenset()
    """With ``alive``: the nodes whose record expired and that are not yet forgotten."""
    problem: str | None = None
    """Set when Redis cannot be reached: the view keeps its last known state."""
    problems: dict[str, tuple[str, str]] = field(default_factory=dict)
    """With ``alive``: the live nodes in trouble, each with a status level and why (their data is stale)."""


class BusFollower:
    """Follow every node's channels on Redis (see the module docstring)."""

    def __init__(
        self,
        bus: Backplane,
        *,
        forget_after: float,
        scan_interval: float,
        on_state: Callable[[str, str], None],
        clock: Callable[[], float] = time.time,
        counts: dict[str, int] | None = None,
        max_entry_bytes: int | None = None,
    ) -> None:
        self.bus = bus
        self._max_entry = max_entry_bytes
        self._scan_interval = scan_interval
        self._on_state = on_state
        self._clock = clock
        self._channel_of: dict[str, tuple[str, str]] = {}  # stream key followed -> (node, channel)
        self._last: dict[str, bytes] = {}  # stream key -> id of the newest entry taken
        self._new: set[str] = set()  # stream keys followed but not fetched yet
        self._index: dict[str, bytes] = {}  # node -> id of the last changes-index entry read
        self._batch: dict[str, tuple[str, int]] = {}  # node -> (session, n) of that entry
        self._held: dict[str, frozenset[str]] = {}  # node -> ADW ids its newest monitor lists
        self._nodes: frozenset[str] = frozenset()  # nodes followed (alive or not yet forgotten)
        self._liveness = Liveness(forget_after=forget_after, slack=scan_interval)
        self._refused: set[str] = set()  # keys that are not streams: not read again until a reconnect
        self._logged: set[str] = set()
        # Entries by outcome (the app's Counters.backplane: /metrics reads it); "bad" counts distinct ones.
        self.counts = counts if counts is not None else {}
        for outcome in ("read", "bad"):
            self.counts.setdefault(outcome, 0)
        self.state: tuple[str, str] = ("degraded", f"connecting to {bus.where}")

    async def changes(self) -> AsyncGenerator[Batch, None]:
        """Yield a Batch per read, forever; reconnect with backoff while Redis is away."""
        attempt = 0
        while True:
            try:
                await self.bus.connect()
                self._start_over()
                attempt = 0
                async for batch in self._serve():
                    yield batch
            except Unreachable as exc:
                attempt += 1
                problem = f"cannot reach {self.bus.where}: {exc}; showing the last known state, retrying"
                self._set("error", problem)
                yield Batch(problem=problem)
                await RETRY.pause(attempt)
            finally:
                await self.bus.close()

    def failed(self, read: Batch) -> bool:
        """Return False: a batch Redis could not give says so in ``problem`` and in the state, not as a failed read."""
        return False

    def _start_over(self) -> None:
        """Follow every node afresh (after a reconnect: Redis may have lost or changed anything)."""
        for node in self._nodes:
            self._forget(node)
        self._nodes = frozenset()
        self._refused.clear()

    async def _serve(self) -> AsyncGenerator[Batch, None]:
        next_scan = 0.0
        while True:
            now = time.monotonic()
            if now >= next_scan:
                yield await self._scan()
                next_scan = time.monotonic() + self._scan_interval
                continue
            if not self._index:
                await asyncio.sleep(max(0.0, next_scan - now))
                continue
            block = max(1, int((next_scan - now) * 1000))
            streams = {changes_key(node): last for node, last in self._index.items()}
            try:
                reply = await self.bus.read(streams, count=INDEX_COUNT, block_ms=block)
            except Refused as exc:  # an index that is not a stream fails the whole read: find it, drop it
                await self._drop_wrong_indexes(str(exc))
                continue
            data = await self._fetch(self._named(reply))
            if data:
                yield Batch(data)

    async def _scan(self) -> Batch:
        """Look at the node records; start following new nodes; return the nodes' liveness (and their first data)."""
        records = await self._records()
        names = sorted(records)
        found = await self.bus.values([NODE_RECORD + n for n in names])
        live: dict[str, Record] = {}
        for name, raw in zip(names, found, strict=True):
            if raw is not None:  # the record exists: the node is alive (what it says is read when it can be)
                try:
                    live[name] = decode_record(name.encode(), raw)
                except BadEntry:
                    live[name] = records[name]
        seen = self._liveness.look(records, live, self._clock())
        alive, gone, problems = seen.alive, seen.gone, seen.problems
        nodes = alive | gone
        for node in self._nodes - nodes:
            self._forget(node)
        new = sorted(nodes - self._nodes)
        self._nodes = nodes
        await self._follow(new)
        data = await self._fetch(set())
        message = f"reading {len(alive)} node(s) from {self.bus.where}" + _also(gone)
        if not nodes:
            message = f"no node has published to {self.bus.where} yet (is [backplane] url the same on the nodes?)"
        if problems:
            message += "; " + "; ".join(f"{n}: {why}" for n, (_, why) in sorted(problems.items()))
        bad = self.counts["bad"]
        if bad:
            message += f"; skipped {bad} bad entries (see the log)"
        level = "error" if any(lv == "error" for lv, _ in problems.values()) else "degraded"
        self._set(level if bad or problems or not nodes else "healthy", message)
        return Batch(data, alive=alive, gone=gone, problems=problems)

    async def _records(self) -> dict[str, Record]:
        records: dict[str, Record] = {}
        try:
            found = await self.bus.hash_all(NODES)
        except Refused as exc:  # adwb:nodes is not a hash: no node can be found (said once)
            self._bad(f"{NODES}: {exc}")
            found = {}
        for name, raw in found.items():
            try:
                record = decode_record(name, raw)
            except BadEntry as exc:
                self._bad(str(exc))
                continue
            records[record.name] = record
        return records

    async def _follow(self, nodes: list[str]) -> None:
        """Start following ``nodes``: their index from its newest entry, then each channel's newest entry."""
        if not nodes:
            return
        replies = await self.bus.newest([changes_key(node) for node in nodes])
        for node, reply in zip(nodes, replies, strict=True):
            if isinstance(reply, Refused):
                self._refuse(changes_key(node), str(reply))  # its channels are read once, not followed
            else:
                self._index[node] = reply[0] if reply else b"0-0"
                self._note_batch(node, reply[1] if reply else None)
            self._resync(node)

    def _resync(self, node: str) -> None:
        """Fetch every channel of ``node`` followed (and its shared ones, if not yet)."""
        for channel in SHARED:
            self._want(node, channel)
        self._new.update(key for key, (n, _) in self._channel_of.items() if n == node)

    def _named(self, pairs: Iterable[tuple[str, list[StreamEntry]]]) -> set[str]:
        """Return the followed streams the index entries of a read name (all of a node's after a gap)."""
        named: set[str] = set()
        for key, entries in pairs:
            node = key[len(CHANGES) :]
            if node not in self._index:
                continue
            for entry_id, fields in entries:
                self._index[node] = entry_id
                before = self._batch.get(node)
                channels = self._note_batch(node, fields)
                if channels is None or before is None or self._batch.get(node) != (before[0], before[1] + 1):
                    self._resync(node)  # a gap (missed or trimmed entries, a restarted node): read it whole
                    continue
                named.update(k for c in channels if (k := stream_key(node, c)) in self._channel_of)
        return named

    def _note_batch(self, node: str, fields: Any) -> list[str] | None:
        """Note a changes-index entry's session and number; return the channels it names (None if unusable)."""
        if fields is None:
            self._batch.pop(node, None)
            return None
        try:
            session, n, channels = decode_change(fields)
        except BadEntry as exc:
            self._bad(f"{changes_key(node)}: {exc}")
            self._batch.pop(node, None)
            return None
        self._batch[node] = (session, n)
        self._liveness.ran(node, session, self._clock())  # a session is a run: two runs under one name alternate
        return channels

    def _want(self, node: str, channel: str) -> None:
        key = stream_key(node, channel)
        if key not in self._channel_of and key not in self._refused:
            self._channel_of[key] = (node, channel)
            self._new.add(key)

    async def _fetch(self, keys: set[str]) -> dict[tuple[str, str], Newest]:
        """Take the newest entry of ``keys`` and of every stream not fetched yet (monitors may name more)."""
        data: dict[tuple[str, str], Newest] = {}
        keys = keys | self._new
        while keys:
            self._new = set()
            order = sorted(keys)
            replies = await self.bus.newest(order)
            for key, reply in zip(order, replies, strict=True):
                if key not in self._channel_of:
                    continue  # no longer followed (its ADW left a monitor fetched in this round)
                if isinstance(reply, Refused):
                    self._refuse(key, str(reply))
                elif reply is not None and reply[0] != self._last.get(key):
                    self._last[key] = reply[0]
                    self.counts["read"] += 1
                    self._take(key, reply[1], data)
            keys = self._new
        return data

    def _take(self, key: str, fields: Any, data: dict[tuple[str, str], Newest]) -> None:
        """Decode one entry into ``data``; note the ADWs a monitor lists."""
        node, channel = self._channel_of[key]
        try:
            value, problems = checked_items(node, channel, decode_data(node, channel, fields, self._max_entry))
            orjson.dumps(value)  # nested past what can be encoded again: refused here, not in the merge
        except BadEntry as exc:
            self._bad(str(exc))
            return
        except orjson.JSONEncodeError as exc:
            self._bad(f"{key}: data cannot be encoded again ({exc})")
            return
        for problem in problems:
            self._bad(problem)
        known = None if problems else entry_digest(fields)  # the node's, unless items were dropped here
        data[(node, channel)] = Newest(value, known or digest(value, spec_of(channel).volatile))
        if channel == "adw-monitor":
            self._hold(node, value)

    def _hold(self, node: str, monitor: Any) -> None:
        """Follow the ``adw-state`` of every ADW ``node``'s monitor lists (and stop those it dropped)."""
        items = monitor.get("workflows") if isinstance(monitor, dict) else None
        held = frozenset(item["adw_id"] for item in items) if isinstance(items, list) else frozenset()  # checked
        for adw_id in self._held.get(node, frozenset()) - held:
            self._unfollow(stream_key(node, adw_state_channel(adw_id)))
        self._held[node] = held
        for adw_id in held:
            self._want(node, adw_state_channel(adw_id))

    def _unfollow(self, key: str) -> None:
        self._channel_of.pop(key, None)
        self._last.pop(key, None)
        self._new.discard(key)

    def _forget(self, node: str) -> None:
        """Stop following ``node`` (forgotten, or before following it afresh)."""
        for key in [k for k, (n, _) in self._channel_of.items() if n == node]:
            self._unfollow(key)
        for table in (self._index, self._batch, self._held):
            table.pop(node, None)

    def _refuse(self, key: str, why: str) -> None:
        """Log a key that cannot be read as a stream once, and stop reading it."""
        self._bad(f"{key}: {why}")
        self._refused.add(key)
        where = self._channel_of.get(key)
        self._unfollow(key)
        if where is not None and where[1] == "adw-monitor":
            self._hold(where[0], None)

    async def _drop_wrong_indexes(self, error: str) -> None:
        nodes = list(self._index)
        kinds = await self.bus.kinds([changes_key(node) for node in nodes])
        for node, kind in zip(nodes, kinds, strict=True):
            if kind not in ("stream", "none"):
                self._refuse(changes_key(node), error)
                self._index.pop(node)

    def _bad(self, message: str) -> None:
        """Log a bad entry once: a record or key still bad at the next look is the same one, not another."""
        if message in self._logged:
            return
        self.counts["bad"] += 1
        if len(self._logged) < MAX_LOGGED:
            self._logged.add(message)
            logger.warning("cluster view: skipped bad data from the bus: %s", message)

    def status_entry(self) -> tuple[str, str, str, dict[str, Any]]:
        """Return the ``backplane`` entry of system status (``channels.health.Reporter``)."""
        return "backplane", *self.state, {}

    def _set(self, level: str, message: str) -> None:
        if (level, message) != self.state:
            if level == "error":
                logger.warning("cluster view: %s", message)
            elif self.state[0] == "error":
                logger.info("cluster view: %s", message)
            self.state = (level, message)
            self._on_state(level, message)


def _also(gone: frozenset[str]) -> str:
    return f"; not heard from: {', '.join(sorted(gone))}" if gone else ""
