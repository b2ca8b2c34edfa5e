"""``Backplane`` on Redis: streams with ``XADD ... MAXLEN ~``, records with ``SET ... PX``, pipelined.

Every call is one round trip. A refused command (``ResponseError``) becomes ``Refused`` in its
place; anything else from redis-py or the socket is ``Unreachable``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from sources.urls import safe_url

from .backplane import Refused, StreamEntry, Unreachable

EXISTS_CHUNK = 1000  # keys per EXISTS


class RedisBackplane:
    """The production ``Backplane`` (see ``backplane``): one connection per ``connect``."""

    def __init__(self, url: str, *, socket_timeout: float) -> None:
        self.url = url
        self.where = safe_url(url)
        self._timeout = socket_timeout
        self._client: aioredis.Redis | None = None

    @asynccontextmanager
    async def _calls(self) -> AsyncIterator[Any]:  # redis-py's stubs type replies loosely: checked here
        if self._client is None:
            raise Unreachable("not connected")
        try:
            yield self._client
        except ResponseError as exc:
            raise Refused(str(exc)) from exc
        except (RedisError, OSError) as exc:
            raise Unreachable(str(exc)) from exc

    async def connect(self) -> None:
        await self.close()
        self._client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=self._timeout)
        try:
            async with self._calls() as client:
                await client.ping()
        except Refused as exc:  # NOAUTH and the like: no use of this connection is possible
            raise Unreachable(str(exc)) from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def put_record(
        self, key: str, hash_key: str, name: str, record: bytes, ttl_ms: int, check: Sequence[str]
    ) -> tuple[Any, list[Refused | None], int]:
        async with self._calls() as client, client.pipeline(transaction=False) as pipe:
            pipe.get(key)  # before the SET: whose record was there
            pipe.set(key, record, px=ttl_ms)
            pipe.hset(hash_key, name, record)
            for start in range(0, len(check), EXISTS_CHUNK):
                pipe.exists(*check[start : start + EXISTS_CHUNK])
            results = await pipe.execute(raise_on_error=False)
        found = sum(r for r in results[3:] if isinstance(r, int))
        return _refusal(results[0]) or results[0], [_refusal(r) for r in results[1:3]], found

    async def append(self, entries: Sequence[tuple[str, Mapping[str, Any], int]]) -> list[Refused | None]:
        async with self._calls() as client, client.pipeline(transaction=False) as pipe:
            for stream, fields, keep in entries:
                pipe.xadd(stream, dict(fields), maxlen=keep, approximate=True)
            results = await pipe.execute(raise_on_error=False)
        return [_refusal(r) for r in results]

    async def hash_all(self, key: str) -> dict[bytes, bytes]:
        async with self._calls() as client:
            return dict(await client.hgetall(key))

    async def values(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        async with self._calls() as client:
            return list(await client.mget(list(keys)))

    async def newest(self, keys: Sequence[str]) -> list[StreamEntry | None | Refused]:
        async with self._calls() as client, client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xrevrange(key, count=1)
            replies = await pipe.execute(raise_on_error=False)
        return [_refusal(r) or (r[0] if r else None) for r in replies]

    async def read(
        self, streams: Mapping[str, bytes], *, count: int, block_ms: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        async with self._calls() as client:
            reply = await client.xread(dict(streams), count=count, block=block_ms)
        # RESP2: a list of [key, entries]
        return [(k.decode() if isinstance(k, bytes) else str(k), list(entries)) for k, entries in reply or ()]

    async def kinds(self, keys: Sequence[str]) -> list[str]:
        async with self._calls() as client, client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            kinds = await pipe.execute()
        return [k.decode() if isinstance(k, bytes) else str(k) for k in kinds]


def _refusal(result: Any) -> Refused | None:
    return Refused(str(result)) if isinstance(result, ResponseError) else None
