"""A node publishes: every event of its channels appended to its Redis Stream of that channel.

Keys and fields are ``bus``'s. The node's record is refreshed every ``refresh_interval``, with an
expiry of ``node_timeout``, and kept in the ``adwb:nodes`` hash. Publishing never blocks local
delivery: the pipeline hands events to ``offer``, which keeps the newest waiting event per
channel (a newest-state system needs no history of what it could not send) in a bounded set,
and one task writes them. While Redis cannot be reached the node serves locally and reports
``backplane`` as error; once it is back it publishes the current state of every channel, then
goes on.

At each refresh the node also checks that the bus still holds what it wrote: its index and
streams (a ``FLUSHALL`` or an eviction took them: it publishes every channel again) and its
record (another run's record there twice in a row: two nodes share one name, an error on both,
said in the record so that the view shows it too). Writes Redis refuses (a key of another type,
``maxmemory``) cost their channels, are retried at the next refresh and are said in the record;
an event larger than ``max_entry_bytes`` is not published (its channel is named in status).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from sources.backoff import Backoff
from sources.tasks import wait_set

from ..core.events import Event
from .backplane import Backplane, Refused, Unreachable
from .bus import INDEX_KEEP, NODE_RECORD, NODES, change_entry, changes_key, entry, stream_key

logger = logging.getLogger(__name__)
RETRY = Backoff(0.5, 5.0)  # between attempts to reach Redis: 0.5 s doubling, then every 5 s


class Publisher:
    """Hand this node's events to Redis without ever making local delivery wait."""

    def __init__(
        self,
        bus: Backplane,
        node: str,
        *,
        current: Callable[[], list[Event]],
        record: Callable[[], dict[str, Any]],
        keep: int,
        queue_max: int,
        refresh_interval: float,
        node_timeout: float,
        on_state: Callable[[str, str], None],
        counts: dict[str, int] | None = None,
        max_entry_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.bus = bus
        self.node = node
        self._current = current  # every channel's newest event, to publish after (re)connecting
        self._record = record
        self._keep = keep
        self._queue_max = queue_max
        self._refresh = refresh_interval
        self._timeout = node_timeout
        self._on_state = on_state
        self._max_entry = max_entry_bytes
        self._waiting: dict[str, Event] = {}
        self._refused: dict[str, str] = {}  # key -> why Redis refused the last write to it
        self._retry: dict[str, Event] = {}  # channel -> its event Redis refused: offered again at the next refresh
        self._retried: dict[str, Event] = {}  # those offered again at the last refresh
        self._oversize: dict[str, int] = {}  # channel -> bytes of its newest event, over max_entry_bytes
        self._written: set[str] = set()  # channels whose stream this node wrote: they must still be there
        self._foreign = 0  # refreshes in a row that found another run's record under this name
        self._other = ""  # that run's address
        # One per run: in the record (a view tells two runs under one name apart) and in the
        # changes index (with the batch count, it lets a view notice entries it missed).
        self._session = secrets.token_hex(8)
        self._batches = 0
        self._wake = asyncio.Event()
        # Entries by outcome (the app's Counters.backplane: /metrics reads it).
        self.counts = counts if counts is not None else {}
        for outcome in ("published", "dropped", "refused"):
            self.counts.setdefault(outcome, 0)
        self.state: tuple[str, str] = ("degraded", f"connecting to {bus.where}")

    def offer(self, event: Event) -> None:
        """Queue ``event`` for Redis (replacing a waiting one of its channel); never blocks."""
        waiting = self._waiting
        waiting.pop(event.channel, None)
        if len(waiting) >= self._queue_max:
            waiting.pop(next(iter(waiting)))  # the oldest waiting channel's event goes: counted
            self.counts["dropped"] += 1
        waiting[event.channel] = event
        self._wake.set()

    async def run(self) -> None:
        """Connect, publish, refresh the node record; reconnect forever. Runs until cancelled."""
        attempt = 0
        while True:
            try:
                await self.bus.connect()
                for event in self._current():  # what changed while away: the newest state of each
                    self.offer(event)
                self._check([], [])  # healthy, unless keys it could not write before still refuse
                attempt = 0
                await self._serve()
            except Unreachable as exc:
                attempt += 1
                self._set("error", f"cannot reach {self.bus.where}: {exc}; serving locally, retrying")
                await RETRY.pause(attempt)
            finally:
                await self.bus.close()

    async def _serve(self) -> None:
        next_record = 0.0
        while True:
            now = time.monotonic()
            if now >= next_record:
                await self._refresh_record()
                next_record = now + self._refresh
            if self._waiting:
                await self._publish()
                continue
            self._wake.clear()
            await wait_set(self._wake, max(0.05, next_record - time.monotonic()))

    async def _refresh_record(self) -> None:
        """Refresh the record; check it and the streams are still this run's and still there."""
        for channel, event in self._retry.items():  # refused last time: try again (a newer one may wait)
            self._waiting.setdefault(channel, event)
        self._retried, self._retry = self._retry, {}
        record = orjson.dumps(
            {**self._record(), "instance": self._session, "refresh_interval": self._refresh, "problem": self._problem()}
        )
        keys = [changes_key(self.node), *(stream_key(self.node, c) for c in sorted(self._written))]
        ttl = int(self._timeout * 1000)
        before, written, found = await self.bus.put_record(NODE_RECORD + self.node, NODES, self.node, record, ttl, keys)
        self._note_record(before)
        if self._written and found < len(keys):
            # The bus lost keys (FLUSHALL, eviction): a view would serve nothing for the channels
            # that do not change. Publish the newest state of every channel again.
            logger.warning("backplane: streams of %s are gone from the bus; publishing every channel again", self.node)
            self._written.clear()
            for event in self._current():
                self.offer(event)
        self._check([NODE_RECORD + self.node, NODES], written)

    def _note_record(self, found: Any) -> None:
        """Count refreshes in a row that found another run's record under this node's name."""
        try:
            other = orjson.loads(found) if isinstance(found, bytes) else None
        except orjson.JSONDecodeError:
            other = None
        instance = other.get("instance") if isinstance(other, dict) else None
        if isinstance(instance, str) and instance and instance != self._session:
            self._foreign += 1  # once may be this node's previous run, whose record has not expired yet
            self._other = str(other.get("address", "?"))[:200] if isinstance(other, dict) else "?"
        else:
            self._foreign = 0

    async def _publish(self) -> None:
        batch, self._waiting = self._waiting, {}
        fields = {}
        for channel, event in batch.items():
            fields[channel] = entry(self.node, event)
            size = len(fields[channel]["data"])
            if size > self._max_entry:  # not published: the view keeps this channel's previous state
                if channel not in self._oversize:
                    logger.warning("backplane: %s is %d bytes, over [backplane] max_entry_bytes", channel, size)
                self._oversize[channel] = size
                del fields[channel]
            else:
                self._oversize.pop(channel, None)
        if not fields:
            self._check([], [])
            return
        entries = [(stream_key(self.node, channel), values, self._keep) for channel, values in fields.items()]
        # Last, so a view told of these channels finds their entries already there.
        entries.append((changes_key(self.node), change_entry(self._session, self._batches, fields), INDEX_KEEP))
        try:
            results = await self.bus.append(entries)
        except BaseException:
            for channel, event in batch.items():  # not sent: they wait again (newer ones win)
                self._waiting.setdefault(channel, event)
            raise
        keys = [stream_key(self.node, channel) for channel in fields] + [changes_key(self.node)]
        self._check(keys, results)
        self._batches += 1
        for channel, result in zip(fields, results, strict=False):
            if isinstance(result, Refused):
                self._retry[channel] = batch[channel]
                if self._retried.get(channel) is not batch[channel]:  # each event counted once, not per retry
                    self.counts["refused"] += 1
            else:
                self._written.add(channel)
                self.counts["published"] += 1

    def _problem(self) -> str:
        """Return what keeps this node from publishing all it has ("" for nothing): said in its record."""
        if self._foreign >= 2:
            return (
                f"another run of node {self.node!r} (at {self._other}) publishes under the same name:"
                " give each node its own [backplane] node"
            )
        if self._refused:
            key, why = next(iter(sorted(self._refused.items())))
            return f"Redis refuses writes to {len(self._refused)} key(s), e.g. {key}: {why[:200]}"
        if self._oversize:
            shown = ", ".join(sorted(self._oversize)[:3])
            return f"{len(self._oversize)} channel(s) over [backplane] max_entry_bytes, not published: {shown}"
        return ""

    def _check(self, keys: list[str], results: list[Refused | None]) -> None:
        """Note the keys Redis refused (a key of another type, maxmemory): each costs its own channel only."""
        for key, result in zip(keys, results, strict=True):
            if result is not None:
                if key not in self._refused:
                    logger.warning("backplane: Redis refused %s: %s; publishing the other channels", key, result)
                self._refused[key] = str(result)
            else:
                self._refused.pop(key, None)
        base = f"publishing to {self.bus.where} as {self.node}"
        problem = self._problem()
        if self._foreign >= 2 or NODE_RECORD + self.node in self._refused:
            self._set("error", problem)  # the view sees the other run's record, or none: not this node
        elif problem:
            self._set("degraded", f"{base}; {problem}")
        else:
            self._set("healthy", base)

    def status_entry(self) -> tuple[str, str, str, dict[str, Any]]:
        """Return the ``backplane`` entry of system status (``channels.health.Reporter``)."""
        return "backplane", *self.state, {}

    def _set(self, level: str, message: str) -> None:
        if (level, message) != self.state:
            if level == "error":
                logger.warning("backplane: %s", message)
            else:
                logger.info("backplane: %s", message)
            self.state = (level, message)
            self._on_state(level, message)
