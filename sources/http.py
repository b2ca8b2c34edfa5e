"""HTTP services the dashboard shows (webhook status, OpenAPI routes, health checks), polled.

Sources do not import aiohttp: the broadcaster hands them a ``Fetch``. ``MemoryFetch`` answers
from a dict, for tests of what is built on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Reply:
    """What a GET returned; ``error`` is set (and ``status`` 0) when nothing came back."""

    status: int = 0
    body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Return whether the server answered 2xx."""
        return self.error is None and 200 <= self.status < 300

    def problem(self) -> str | None:
        """Return why this is not a usable answer, or None if it is."""
        if self.error is not None:
            return self.error
        return None if self.ok else f"HTTP {self.status}"


class Fetch(Protocol):
    """GET ``url`` and return a Reply within ``timeout`` seconds.

    Never raises for network trouble: unreachable hosts, refused connections and timeouts come
    back as ``Reply(error="...")`` with a message a user can act on.
    """

    async def __call__(self, url: str, *, timeout: float) -> Reply: ...


class MemoryFetch:
    """A Fetch answering from ``replies`` (url -> Reply); unknown urls are refused."""

    def __init__(self, replies: Mapping[str, Reply] | None = None) -> None:
        self.replies = dict(replies or {})
        self.calls: list[str] = []

    async def __call__(self, url: str, *, timeout: float) -> Reply:
        self.calls.append(url)
        return self.replies.get(url, Reply(error=f"{url}: connection refused"))


async def poll(
    fetch: Fetch, urls: Mapping[str, str], *, interval: float, timeout: float
) -> AsyncGenerator[dict[str, Reply], None]:
    """Yield ``{name: Reply}`` for every url (fetched together) at once, then every ``interval`` s."""
    names = list(urls)
    while True:
        replies = await asyncio.gather(*(fetch(urls[name], timeout=timeout) for name in names))
        yield dict(zip(names, replies, strict=True))
        await asyncio.sleep(interval)
