"""The hub: channel -> subscribers. Each event is encoded once; every subscriber gets those bytes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import WSCloseCode

from .client import Client
from .events import Event, empty_event
from .protocol import encode_event

logger = logging.getLogger(__name__)


class Hub:
    """Hold the newest published event of each channel and hand its frame to the subscribers."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._current: dict[str, tuple[Event, bytes]] = {}
        self._subscribers: dict[str, set[Client]] = {}
        self._clients: dict[Client, str] = {}

    @property
    def clients(self) -> list[Client]:
        """Return the connected clients."""
        return list(self._clients)

    def publish(self, event: Event) -> None:
        """Make ``event`` the channel's current state and queue its frame for every subscriber."""
        current = self.current(event.channel)
        if event.digest == current.digest:
            # A change and its undoing inside one throttle window: the subscribers already
            # have this state. Keep the newer seq for later snapshots, send nothing.
            self._current[event.channel] = (event, encode_event(event))
            return
        frame = encode_event(event)
        self._current[event.channel] = (event, frame)
        for client in self._subscribers.get(event.channel, ()):
            client.post(event.channel, frame)

    def current(self, channel: str) -> Event:
        """Return the newest published event of ``channel`` (its empty shape at seq 0 if none)."""
        held = self._current.get(channel)
        return held[0] if held else empty_event(channel, self._clock())

    def attach(self, client: Client, channel: str) -> None:
        """Subscribe ``client`` to ``channel`` and queue the channel's current state for it."""
        held = self._current.get(channel)
        frame = held[1] if held else encode_event(empty_event(channel, self._clock()))
        self._subscribers.setdefault(channel, set()).add(client)
        self._clients[client] = channel
        client.post(channel, frame)

    def detach(self, client: Client) -> None:
        """Forget ``client``."""
        channel = self._clients.pop(client, None)
        subscribers = self._subscribers.get(channel or "")
        if subscribers is not None:
            subscribers.discard(client)
            if not subscribers:
                del self._subscribers[channel or ""]

    def subscriber_count(self, channel: str) -> int:
        """Return how many clients listen on ``channel``."""
        return len(self._subscribers.get(channel, ()))

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"server shutdown") -> None:
        """Close every client's socket with ``code``, all at once."""
        clients = self.clients
        if clients:
            logger.info("closing %d client(s) with %d", len(clients), code)
            await asyncio.gather(*(c.close(code, message) for c in clients), return_exceptions=True)
