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


class Poll:
    """A source (``sources.source.Source``): ``{name: Reply}`` for every url at once, then every ``interval`` s."""

    def __init__(self, fetch: Fetch, urls: Mapping[str, str], *, interval: float, timeout: float) -> None:
        self._fetch = fetch
        self._urls = dict(urls)
        self._interval = interval
        self._timeout = timeout

    async def changes(self) -> AsyncGenerator[dict[str, Reply], None]:
        """Yield every url's Reply (fetched together), forever."""
        names = list(self._urls)
        while True:
            replies = await asyncio.gather(*(self._fetch(self._urls[name], timeout=self._timeout) for name in names))
            yield dict(zip(names, replies, strict=True))
            await asyncio.sleep(self._interval)

    def failed(self, read: Mapping[str, Reply]) -> bool:
        """Return whether any url answered badly."""
        return any(reply.problem() is not None for reply in read.values())
