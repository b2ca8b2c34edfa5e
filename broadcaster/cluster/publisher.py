"""A node publishes: every event of its channels appended to its Redis Stream of that channel.

Keys and fields are ``bus``'s. The node's record is refreshed every ``refresh_interval``, with an
expiry of ``node_timeout``, and kept in the ``adwb:nodes`` hash. Publishing never blocks local
delivery: the pipeline hands events to ``offer``, which keeps the newest waiting event per
channel (a newest-state system needs no history of what it could not send) in a bounded set,
and one task writes them. While Redis cannot be reached the node serves locally and reports
``backplane`` as error; once it is back it publishes the current state of every channel, then
goes on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..events import Event
from .bus import INDEX_KEEP, NODE_RECORD, NODES, change_entry, changes_key, entry, safe_url, stream_key

logger = logging.getLogger(__name__)
RETRY = (0.5, 1.0, 2.0, 5.0)  # seconds between attempts to reach Redis, then every 5 s


class Publisher:
    """Hand this node's events to Redis without ever making local delivery wait."""

    def __init__(
        self,
        url: str,
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
    ) -> None:
        self.url = url
        self.node = node
        self._current = current  # every channel's newest event, to publish after (re)connecting
        self._record = record
        self._keep = keep
        self._queue_max = queue_max
        self._refresh = refresh_interval
        self._timeout = node_timeout
        self._on_state = on_state
        self._waiting: dict[str, Event] = {}
        self._refused: dict[str, str] = {}  # key -> why Redis refused the last write to it
        self._session = secrets.token_hex(8)  # with the batch count, lets a view notice entries it missed
        self._batches = 0
        self._wake = asyncio.Event()
        # Entries by outcome (the app's Counters.backplane: /metrics reads it).
        self.counts = counts if counts is not None else {}
        for outcome in ("published", "dropped", "refused"):
            self.counts.setdefault(outcome, 0)
        self.state: tuple[str, str] = ("degraded", f"connecting to {safe_url(url)}")

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
            client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
            try:
                await client.ping()
                for event in self._current():  # what changed while away: the newest state of each
                    self.offer(event)
                self._check([], [])  # healthy, unless keys it could not write before still refuse
                attempt = 0
                await self._serve(client)
            except (RedisError, OSError) as exc:
                delay = RETRY[min(attempt, len(RETRY) - 1)]
                attempt += 1
                self._set("error", f"cannot reach {safe_url(self.url)}: {exc}; serving locally, retrying")
                await asyncio.sleep(delay)
            finally:
                await client.aclose()

    async def _serve(self, client: aioredis.Redis) -> None:
        next_record = 0.0
        while True:
            now = time.monotonic()
            if now >= next_record:
                record = orjson.dumps(self._record())
                async with client.pipeline(transaction=False) as pipe:
                    pipe.set(NODE_RECORD + self.node, record, px=int(self._timeout * 1000))
                    pipe.hset(NODES, self.node, record)
                    self._check([NODE_RECORD + self.node, NODES], await pipe.execute(raise_on_error=False))
                next_record = now + self._refresh
            if self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for channel, event in batch.items():
                            pipe.xadd(
                                stream_key(self.node, channel),
                                entry(self.node, event),
                                maxlen=self._keep,
                                approximate=True,
                            )
                        # Last, so a view told of these channels finds their entries already there.
                        pipe.xadd(
                            changes_key(self.node),
                            change_entry(self._session, self._batches, batch),
                            maxlen=INDEX_KEEP,
                            approximate=True,
                        )
                        results = await pipe.execute(raise_on_error=False)
                except BaseException:
                    for channel, event in batch.items():  # not sent: they wait again (newer ones win)
                        self._waiting.setdefault(channel, event)
                    raise
                keys = [stream_key(self.node, channel) for channel in batch] + [changes_key(self.node)]
                self._check(keys, results)
                self._batches += 1
                refused = sum(isinstance(r, ResponseError) for r in results[:-1])
                self.counts["published"] += len(batch) - refused
                self.counts["refused"] += refused
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.05, next_record - time.monotonic()))
            except TimeoutError:
                pass

    def _check(self, keys: list[str], results: list[Any]) -> None:
        """Note the keys Redis refused (a key of another type): each costs its own channel, not the others."""
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, ResponseError):
                if key not in self._refused:
                    logger.warning("backplane: Redis refused %s: %s; publishing the other channels", key, result)
                self._refused[key] = str(result)
            else:
                self._refused.pop(key, None)
        base = f"publishing to {safe_url(self.url)} as {self.node}"
        if self._refused:
            shown = ", ".join(sorted(self._refused)[:3])
            self._set("degraded", f"{base}; Redis refuses {len(self._refused)} key(s) ({shown}): not streams?")
        else:
            self._set("healthy", base)

    def _set(self, level: str, message: str) -> None:
        if (level, message) != self.state:
            if level == "error":
                logger.warning("backplane: %s", message)
            else:
                logger.info("backplane: %s", message)
            self.state = (level, message)
            self._on_state(level, message)
