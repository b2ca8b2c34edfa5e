"""Delivery of alert messages to Apprise URLs: off the event loop, bounded, rate-limited, retried.

Each destination (one Apprise URL) has its own bounded queue and its own task: a slow or dead
one never holds up another, and nothing here runs on the event loop's time (Apprise's blocking
send runs in a worker thread). At most ``max_per_minute`` messages go to one destination in any
``window``; what comes in past that is held and sent as one "N more alerts" message when the
window has room. A message that fails is retried with backoff until it goes: after ``retries``
failed attempts the destination shows as ``alerts`` ``error`` in system status and the failure
is logged once with how many messages wait; when the queue is full the oldest waiting message
is dropped (counted, and logged once when the destination is back). URLs are secrets: only
their scheme is ever logged or shown.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import apprise

from sources.backoff import Backoff

from ..channels.specs import ALERTS
from ..errors import StartupError

logger = logging.getLogger(__name__)
# Apprise logs each failed send itself, naming the destination's host: its lines stay out of the
# service's log; delivery logs a failing destination once, by scheme, with what Apprise said.
logging.getLogger("apprise").propagate = False
RETRY = Backoff(1.0, 30.0)
SUMMARY_LINES = 20
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://\S+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Message:
    """One message to every destination: title, body, and Apprise's notify type."""

    title: str
    body: str
    kind: str = "info"  # info | success | warning | failure


Notify = Callable[[Any, Message], tuple[bool, str]]


def scheme_of(url: str) -> str:
    """Return what may be shown of a destination URL: its scheme."""
    return url.split("://", 1)[0].lower() + "://" if "://" in url else "?"


def apprise_notify(target: Any, message: Message) -> tuple[bool, str]:
    """Send ``message`` through ``target`` (an ``apprise.Apprise``); return (delivered, why not). Blocking."""
    seen: list[str] = []
    result = target.notify(
        body=message.body,
        title=message.title,
        notify_type=message.kind,
        log_callback=lambda entry, _plugin: seen.append(str(entry.message)),
        log_level=logging.WARNING,
    )
    return bool(result), seen[-1] if seen else "not delivered"


def without_url(text: str, url: str) -> str:
    """Return ``text`` with every part of ``url`` (host, user, tokens, path) taken out: the URL is a secret."""
    text = _URL.sub(r"\1://…", text)
    rest = url.split("://", 1)[-1]
    parts = set(re.split(r"[/:@?#&=]+", rest)) | set(re.split(r"[^A-Za-z0-9_-]+", rest))  # hosts whole, and tokens
    for part in sorted(parts, key=len, reverse=True):
        if len(part) >= 3:
            text = text.replace(part, "…")
    return text[:200]


class Destination:
    """One Apprise URL, its queue and its record of what it sent."""

    def __init__(self, url: str, index: int) -> None:
        target = apprise.Apprise()
        if not target.add(url):
            raise StartupError(f"[alerts] urls: entry {index + 1} ({scheme_of(url)}) is not an Apprise URL")
        self.target = target
        self.url = url
        self.scheme = scheme_of(url)
        self.queue: deque[Message] = deque()  # waiting
        self.sending: list[Message] = []  # being sent (retried until they go)
        self.sent: deque[float] = deque()  # when each of the last messages went (monotonic)
        self.wake = asyncio.Event()
        self.limited = False  # messages were held for the rate limit: the next send folds them
        self.failing: str | None = None
        self.dropped = 0


class Delivery:
    """Send alert messages to every destination (see the module)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        max_per_minute: int = 10,
        queue_max: int = 200,
        retries: int = 3,
        window: float = 60.0,
        notify: Notify = apprise_notify,
        backoff: Backoff = RETRY,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[], None] = lambda: None,
    ) -> None:
        self.destinations = [Destination(url, n) for n, url in enumerate(urls)]
        self._max = max_per_minute
        self._queue_max = queue_max
        self._retries = retries
        self._window = window
        self._notify = notify
        self._backoff = backoff
        self._clock = clock
        self.on_state = on_state

    def send(self, message: Message) -> None:
        """Queue ``message`` for every destination; never waits."""
        for d in self.destinations:
            if len(d.queue) >= self._queue_max:
                d.queue.popleft()
                d.dropped += 1
            d.queue.append(message)
            d.wake.set()

    def status_entry(self) -> tuple[str, str, str, dict[str, Any]] | None:
        """Return the ``alerts`` entry of system status (``channels.health.Reporter``)."""
        if not self.destinations:
            return None
        failing = [d.failing for d in self.destinations if d.failing]
        waiting = sum(len(d.queue) + len(d.sending) for d in self.destinations)
        if failing:
            return ALERTS.service, "error", "; ".join(failing), {"waiting": waiting}
        names = ", ".join(d.scheme for d in self.destinations)
        return ALERTS.service, "healthy", f"delivering to {names}", {"waiting": waiting}

    async def run(self) -> None:
        """Deliver to every destination until cancelled."""
        async with asyncio.TaskGroup() as group:
            for d in self.destinations:
                group.create_task(self._serve(d))

    async def _serve(self, d: Destination) -> None:
        while True:
            while not d.queue:
                d.wake.clear()
                await d.wake.wait()
            wait = self._room(d)
            if wait > 0:
                d.limited = True
                await self._backoff.sleep(wait)
                continue
            message, d.sending = self._next(d)  # out of the queue: the bound counts only what waits
            await self._deliver(d, message)
            d.sending = []
            d.sent.append(self._clock())

    def _room(self, d: Destination) -> float:
        """Return how long until another message may go to ``d`` (0: now)."""
        now = self._clock()
        while d.sent and d.sent[0] <= now - self._window:
            d.sent.popleft()
        return 0.0 if len(d.sent) < self._max else d.sent[0] + self._window - now

    def _next(self, d: Destination) -> tuple[Message, list[Message]]:
        """Take the next message for ``d`` out of its queue; return it and the queued ones it stands for."""
        if not d.limited or len(d.queue) == 1:
            d.limited = False
            first = d.queue.popleft()
            return first, [first]
        d.limited = False
        held = list(d.queue)
        d.queue.clear()
        lines = [f"- {m.title}" for m in held[:SUMMARY_LINES]]
        if len(held) > SUMMARY_LINES:
            lines.append(f"- and {len(held) - SUMMARY_LINES} more")
        kind = "failure" if any(m.kind == "failure" for m in held) else "warning"
        return Message(f"{len(held)} more alerts", "\n".join(lines), kind), held

    async def _deliver(self, d: Destination, message: Message) -> None:
        """Send ``message`` to ``d``, retrying with backoff until it goes."""
        attempt = 0
        while True:
            attempt += 1
            delivered, said = await asyncio.to_thread(self._notify, d.target, message)
            why = without_url(said, d.url)
            if delivered:
                self._recovered(d)
                return
            if attempt == self._retries:
                d.failing = f"{d.scheme}: {why}"
                logger.warning(
                    "alerts: %s failed %d times (%s); %d message(s) wait, retrying",
                    d.scheme,
                    attempt,
                    why,
                    len(d.queue) + len(d.sending),
                )
                self.on_state()
            await self._backoff.pause(attempt)

    def _recovered(self, d: Destination) -> None:
        if d.failing is None:
            return
        d.failing = None
        if d.dropped:
            logger.warning("alerts: %s is back; %d message(s) were dropped while it failed", d.scheme, d.dropped)
            d.dropped = 0
        else:
            logger.info("alerts: %s is back", d.scheme)
        self.on_state()
