"""``Backplane`` in this process: the bus of the cluster tests that need no Redis.

It keeps what Redis would (streams with increasing ids trimmed to ``keep``, strings that
expire on an injected clock, hashes) and fails the way Redis does: ``down`` makes every call
``Unreachable``; a key of another type is ``Refused``, per command. Tests set either, and can put
a string or a hash anywhere (``put_string``, ``put_hash``) to stand for a foreign writer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .backplane import Refused, StreamEntry, Unreachable

WRONG_TYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)).encode()


class MemoryBackplane:
    """A ``Backplane`` (see ``backplane``) shared by every node and view of one test."""

    where = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.down = False  # every call raises Unreachable while set
        self._clock = clock
        self._streams: dict[str, list[StreamEntry]] = {}
        self._strings: dict[str, tuple[bytes, float | None]] = {}  # key -> (value, expires at)
        self._hashes: dict[str, dict[bytes, bytes]] = {}
        self._last_id = 0
        self._appended = asyncio.Condition()
        self.blocked = 0  # reads waiting for an entry (Redis: INFO clients' blocked_clients)

    def put_string(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Set ``key`` to a string (replacing a key of any type), as another writer could."""
        self.delete(key)
        self._strings[key] = (value, None if ttl is None else self._clock() + ttl)

    def put_hash(self, key: str, fields: Mapping[bytes, bytes]) -> None:
        """Set ``key`` to a hash (replacing a key of any type)."""
        self.delete(key)
        self._hashes[key] = dict(fields)

    def delete(self, key: str) -> None:
        """Remove ``key`` whatever it holds."""
        for table in (self._streams, self._strings, self._hashes):
            table.pop(key, None)

    def flush(self) -> None:
        """Forget everything (a FLUSHALL)."""
        self._streams.clear()
        self._strings.clear()
        self._hashes.clear()

    def keys(self) -> list[str]:
        """Return every key that exists (expired strings left out)."""
        return sorted(k for k in (*self._streams, *self._strings, *self._hashes) if self._kind(k) != "none")

    def _up(self) -> None:
        if self.down:
            raise Unreachable("memory backplane is down")

    def _kind(self, key: str) -> str:
        if key in self._streams:
            return "stream"
        if key in self._hashes:
            return "hash"
        held = self._strings.get(key)
        if held is not None:
            if held[1] is None or held[1] > self._clock():
                return "string"
            del self._strings[key]
        return "none"

    def _stream(self, key: str) -> list[StreamEntry] | Refused:
        kind = self._kind(key)
        if kind not in ("stream", "none"):
            return Refused(WRONG_TYPE)
        return self._streams.get(key, [])

    async def connect(self) -> None:
        self._up()

    async def close(self) -> None:
        pass

    async def put_record(
        self, key: str, hash_key: str, name: str, record: bytes, ttl_ms: int, check: Sequence[str]
    ) -> tuple[Any, list[Refused | None], int]:
        self._up()
        kind = self._kind(key)
        before: Any = self._strings[key][0] if kind == "string" else None if kind == "none" else Refused(WRONG_TYPE)
        written: list[Refused | None] = [None, None]
        if kind in ("string", "none"):
            self._strings[key] = (record, self._clock() + ttl_ms / 1000)
        else:
            written[0] = Refused(WRONG_TYPE)
        if self._kind(hash_key) in ("hash", "none"):
            self._hashes.setdefault(hash_key, {})[name.encode()] = record
        else:
            written[1] = Refused(WRONG_TYPE)
        return before, written, sum(self._kind(k) != "none" for k in check)

    async def append(self, entries: Sequence[tuple[str, Mapping[str, Any], int]]) -> list[Refused | None]:
        self._up()
        results: list[Refused | None] = []
        for stream, fields, keep in entries:
            held = self._stream(stream)
            if isinstance(held, Refused):
                results.append(held)
                continue
            self._last_id += 1
            held.append((f"{self._last_id}-0".encode(), {_bytes(k): _bytes(v) for k, v in fields.items()}))
            del held[: max(0, len(held) - keep)]
            self._streams[stream] = held
            results.append(None)
        async with self._appended:
            self._appended.notify_all()
        return results

    async def hash_all(self, key: str) -> dict[bytes, bytes]:
        self._up()
        kind = self._kind(key)
        if kind not in ("hash", "none"):
            raise Refused(WRONG_TYPE)
        return dict(self._hashes.get(key, {}))

    async def values(self, keys: Sequence[str]) -> list[bytes | None]:
        self._up()
        return [self._strings[k][0] if self._kind(k) == "string" else None for k in keys]

    async def newest(self, keys: Sequence[str]) -> list[StreamEntry | None | Refused]:
        self._up()
        out: list[StreamEntry | None | Refused] = []
        for key in keys:
            held = self._stream(key)
            out.append(held if isinstance(held, Refused) else held[-1] if held else None)
        return out

    async def read(
        self, streams: Mapping[str, bytes], *, count: int, block_ms: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        self._up()
        found = self._after(streams, count)
        if not found:
            async with self._appended:
                self.blocked += 1
                try:
                    async with asyncio.timeout(block_ms / 1000):  # not wait_for: it can lose a cancellation on 3.11
                        await self._appended.wait()
                except TimeoutError:
                    return []
                finally:
                    self.blocked -= 1
            self._up()
            found = self._after(streams, count)
        return found

    def _after(self, streams: Mapping[str, bytes], count: int) -> list[tuple[str, list[StreamEntry]]]:
        found = []
        for key, last in streams.items():
            held = self._stream(key)
            if isinstance(held, Refused):
                raise held
            newer = [e for e in held if _id(e[0]) > _id(last)][:count]
            if newer:
                found.append((key, newer))
        return found

    async def kinds(self, keys: Sequence[str]) -> list[str]:
        self._up()
        return [self._kind(k) for k in keys]


def _id(raw: bytes) -> tuple[int, int]:
    ms, _, n = raw.decode().partition("-")
    return int(ms), int(n or 0)
