"""The seam between the cluster code and the bus it runs on: ``Backplane``.

Nodes append entries to streams and keep a record that expires; views read the records, the
newest entry of streams, and block on new entries of a few streams. ``RedisBackplane`` is the one
used in production (``redis_backplane``); ``MemoryBackplane`` (``memory_backplane``) keeps all of
it in this process, for tests of the publisher, the follower and the view.

Two kinds of trouble, as Redis has them: ``Unreachable`` (raised: the connection is gone, the
caller reconnects with backoff) and ``Refused`` (one command refused: a key of another type,
``maxmemory``; returned in place of that command's result, or raised by a read of one key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

StreamEntry = tuple[bytes, dict[bytes, bytes]]  # (id, fields) as Redis returns them


class Unreachable(Exception):
    """The bus cannot be reached; what was being written was not written."""


class Refused(Exception):
    """The bus refused one command (a key of another type, out of memory)."""


class Backplane(Protocol):
    """What the publisher and the follower need of the bus (see the module docstring)."""

    where: str  # for messages: the bus without a password

    async def connect(self) -> None:
        """Open a connection and check it answers; raise ``Unreachable``."""
        ...

    async def close(self) -> None:
        """Close the connection (a new ``connect`` may follow)."""
        ...

    async def put_record(
        self, key: str, hash_key: str, name: str, record: bytes, ttl_ms: int, check: Sequence[str]
    ) -> tuple[Any, list[Refused | None], int]:
        """Set ``key`` to ``record`` expiring in ``ttl_ms``, and ``name`` in hash ``hash_key`` to it.

        Returns what ``key`` held before (bytes, None, or ``Refused``), each of the two writes'
        refusal (None: written), and how many of ``check`` exist.
        """
        ...

    async def append(self, entries: Sequence[tuple[str, Mapping[str, Any], int]]) -> list[Refused | None]:
        """Append each ``(stream, fields, keep)`` in order, trimming to about ``keep``; return each one's refusal."""
        ...

    async def hash_all(self, key: str) -> dict[bytes, bytes]:
        """Return every field of hash ``key`` ({} if none); raise ``Refused`` if it is not a hash."""
        ...

    async def values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the value of each string key (None: missing or not a string)."""
        ...

    async def newest(self, keys: Sequence[str]) -> list[StreamEntry | None | Refused]:
        """Return the newest entry of each stream (None: empty or missing; ``Refused``: not a stream)."""
        ...

    async def read(
        self, streams: Mapping[str, bytes], *, count: int, block_ms: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        """Return up to ``count`` entries after each stream's id; wait up to ``block_ms`` for one.

        Raises ``Refused`` if one of them is not a stream.
        """
        ...

    async def kinds(self, keys: Sequence[str]) -> list[str]:
        """Return each key's type: "stream", "hash", "string" or "none"."""
        ...
