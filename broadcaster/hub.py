"""The hub: channel -> subscribers. Each event is encoded once; every subscriber gets those bytes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiohttp import WSCloseCode

from .client import Client
from .events import Event, empty_event
from .protocol import Frame

logger = logging.getLogger(__name__)


class Hub:
    """Hold the newest published event of each channel and hand its frame to the subscribers."""

    def __init__(self, *, epoch: str = "", clock: Callable[[], float] = time.time) -> None:
        self.epoch = epoch  # of the event log; every connection's first frame carries it
        self._clock = clock
        self._current: dict[str, Frame] = {}
        self._subscribers: dict[str, set[Client]] = {}
        self._clients: dict[Client, str] = {}
        self.closing = False  # set once shutdown began: a socket upgraded after that is closed at once

    @property
    def clients(self) -> list[Client]:
        """Return the connected clients."""
        return list(self._clients)

    def publish(self, event: Event) -> None:
        """Make ``event`` the channel's current state and queue its frame for every subscriber."""
        unchanged = event.digest == self.current(event.channel).digest
        frame = Frame(event, self.epoch)
        self._current[event.channel] = frame
        if unchanged:
            # A change and its undoing inside one throttle window: the subscribers already
            # have this state. Keep the newer seq for later snapshots, send nothing.
            return
        for client in self._subscribers.get(event.channel, ()):
            client.post(event.channel, frame)

    def seed(self, events: Iterable[Event]) -> None:
        """Take stored events as the current state (at start-up, before any client)."""
        for event in events:
            self._current[event.channel] = Frame(event, self.epoch)

    def current(self, channel: str) -> Event:
        """Return the newest published event of ``channel`` (its empty shape at seq 0 if none)."""
        return self.frame(channel).event

    def frame(self, channel: str) -> Frame:
        """Return the current frame of ``channel`` (its empty shape at seq 0 if none)."""
        held = self._current.get(channel)
        return held if held is not None else Frame(empty_event(channel, self._clock()), self.epoch)

    def channels(self) -> list[Event]:
        """Return the current event of every channel that has one."""
        return [frame.event for frame in self._current.values()]

    def attach(self, client: Client, channel: str, *, send_current: bool = True) -> None:
        """Subscribe ``client`` to ``channel``; queue the current state unless it already has it."""
        self._subscribers.setdefault(channel, set()).add(client)
        self._clients[client] = channel
        if send_current:
            client.post(channel, self.frame(channel))

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

    def sweep(self, *, ping_interval: float = 0.0) -> int:
        """Drop clients whose socket has not drained for write_timeout or that ignore pings; ping quiet ones.

        Returns how many were dropped. ``ping_interval`` 0 sends no protocol pings.
        """
        dropped = 0
        for client in list(self._clients):
            why = None
            if client.stuck():
                why = f"slow client: its socket took nothing for {client.write_timeout:g}s"
            elif ping_interval > 0:
                why = client.keepalive(ping_interval)
            if why is not None:
                client.drop(why)
                dropped += 1
        return dropped

    async def close_all(
        self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"server shutdown", *, timeout: float = 1.0
    ) -> None:
        """Close every client's socket with ``code``, all at once; abort those not closed within ``timeout``."""
        self.closing = True
        clients = self.clients
        if clients:
            logger.info("closing %d client(s) with %d", len(clients), code)
            await asyncio.gather(*(c.close(code, message, timeout=timeout) for c in clients), return_exceptions=True)
