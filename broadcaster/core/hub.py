"""The hub: channel -> subscribers. Each event is encoded once; every subscriber gets those bytes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import WSCloseCode

from .client import Client, post_all
from .events import Event, empty_event
from .patches import Patcher
from .protocol import Frame, encode_heartbeat, ws_frame
from .schedule import Schedule
from .spec import Catalog

logger = logging.getLogger(__name__)
PARKED_RETRY = 0.05  # seconds between looks at sockets that were full
FRESH_FOR = 1.0  # seconds a freshened frame is reused (first frames, HTTP answers): clocks to the second


class Hub:
    """Hold the newest published event of each channel and hand its frame to the subscribers."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        epoch: str = "",
        clock: Callable[[], float] = time.time,
        tick: Callable[[], float] = time.monotonic,
        fresh: Callable[[str, Any], Any] | None = None,
        refresh_interval: float = 0.0,
        ping_interval: float = 0.0,
        sweep_interval: float = 1.0,
        sent: dict[str, list[int]] | None = None,
    ) -> None:
        """Make an empty hub.

        Args:
            catalog: the channel families (message types, keyed lists, envelope fields).
            clock: timestamps (epoch seconds); ``tick``: intervals (monotonic).
            ping_interval: seconds of a peer's silence before a protocol ping (0: never).
            sweep_interval: how often ``sweep`` is called; clients are filed by it (``schedule``).
        """
        self.catalog = catalog
        self.epoch = epoch  # of the event log; every connection's first frame carries it
        self.sent = {} if sent is None else sent  # family -> [frames, bytes] written to sockets
        self._clock = clock
        self._tick = tick
        self._fresh = fresh  # recomputes a channel's clock-derived fields (see channels/clock_values.py)
        # Channels whose clock values are recomputed when read, and refreshed when quiet (their specs say).
        self._fresh_families = frozenset(family for family, spec in catalog.specs.items() if spec.clock_values)
        self._refresh_interval = refresh_interval
        self._fresh_frames: dict[str, tuple[float, Frame, Frame]] = {}  # channel -> (made at, of, fresh)
        self._sent_at: dict[str, float] = {}  # channel -> when its subscribers last got a frame
        self._fresh_failed: set[str] = set()
        self._patch_failed: set[str] = set()
        self._current: dict[str, Frame] = {}
        # channel -> its subscribers, in the order they came (a dict as an ordered set): they are
        # written in that order, the longest connected first.
        self._subscribers: dict[str, dict[Client, None]] = {}
        self._clients: dict[Client, None] = {}  # each knows its channels (``Client.subscriptions``)
        self._patchers: dict[str, Patcher] = {}  # keyed channels with patch subscribers
        self._parked: set[Client] = set()  # clients whose frames wait for their socket to drain
        self._ping_interval = ping_interval
        self._due: Schedule[Client] = Schedule(sweep_interval)  # when the sweep next owes each client something
        self._flush_timer: asyncio.TimerHandle | None = None
        self.closing = False  # set once shutdown began: a socket upgraded after that is closed at once

    @property
    def clients(self) -> list[Client]:
        """Return the connected clients."""
        return list(self._clients)

    def publish(self, event: Event) -> None:
        """Make ``event`` the channel's current state and queue its frame for every subscriber."""
        unchanged = event.digest == self.current(event.channel).digest
        frame = self._frame(event)
        self._current[event.channel] = frame
        if unchanged:
            # A change and its undoing inside one throttle window: the subscribers already
            # have this state. Keep the newer seq for later snapshots, send nothing.
            return
        patcher = self._patchers.get(event.channel)
        if patcher is not None:
            self._add_patch(patcher, frame)
        now = self._tick()
        subscribers = self._subscribers.get(event.channel)
        if subscribers:
            self._post_all(subscribers, event.channel, frame, now)
        self._sent_at[event.channel] = now

    def _post_all(self, subscribers: Iterable[Client], channel: str, frame: Frame, now: float) -> None:
        """Hand ``frame`` to every subscriber; look again soon at those whose socket was full."""
        for client in post_all(subscribers, channel, frame, now):
            self._park(client)

    def _add_patch(self, patcher: Patcher, frame: Frame) -> None:
        """Give ``frame`` its merge patch for patch subscribers; without one they get it whole."""
        event = frame.event
        base_seq = patcher.seq
        try:
            patch = patcher.patch(event.data, event.seq)
        except Exception:  # never worse than before: the whole message
            if event.channel not in self._patch_failed:
                self._patch_failed.add(event.channel)
                logger.exception("%s: cannot make a patch; sending it whole", event.channel)
            patcher.start(event.data, event.seq)
            return
        if patch is not None:
            frame.set_patch(base_seq, patch)

    def _frame(self, event: Event) -> Frame:
        channel = event.channel
        return Frame(event, self.epoch, self._tally(channel), self.catalog.envelope(channel))

    def _tally(self, channel: str) -> list[int]:
        family = channel.partition(":")[0]
        tally = self.sent.get(family)
        if tally is None:
            tally = self.sent[family] = [0, 0]
        return tally

    def seed(self, events: Iterable[Event]) -> None:
        """Take stored events as the current state (at start-up, before any client)."""
        for event in events:
            self._current[event.channel] = self._frame(event)

    def current(self, channel: str) -> Event:
        """Return the newest published event of ``channel`` (its empty shape at seq 0 if none)."""
        return self.frame(channel).event

    def frame(self, channel: str) -> Frame:
        """Return the current frame of ``channel`` (its empty shape at seq 0 if none)."""
        held = self._current.get(channel)
        return held if held is not None else self._frame(empty_event(self.catalog, channel, self._clock()))

    def fresh_frame(self, channel: str, *, reuse: bool = True) -> Frame:
        """Return the current frame of ``channel`` with its clock-derived fields as of now.

        ``reuse``: one made less than FRESH_FOR ago for the same event will do (first frames and
        HTTP answers in a burst share one encoding).
        """
        frame = self.frame(channel)
        if self._fresh is None or channel.partition(":")[0] not in self._fresh_families:
            return frame
        now = self._tick()
        made = self._fresh_frames.get(channel)
        if reuse and made is not None and made[1] is frame and now - made[0] < FRESH_FOR:
            return made[2]
        try:
            data = self._fresh(channel, frame.event.data)
        except Exception:  # never worse than before: the data as it was published
            if channel not in self._fresh_failed:
                self._fresh_failed.add(channel)
                logger.exception("%s: cannot compute its clock values; sending them as published", channel)
            return frame
        fresh = Frame(dataclasses.replace(frame.event, data=data), self.epoch, frame.tally, frame.envelope)
        self._fresh_frames[channel] = (now, frame, fresh)
        return fresh

    def fresh_current(self, channel: str) -> Event:
        """Return the current event of ``channel`` with its clock-derived fields as of now."""
        return self.fresh_frame(channel).event

    def refresh(self) -> int:
        """Re-send each quiet channel with clock values, at most once per refresh_interval; return how many.

        A refresh keeps the channel's seq and is not an event: only time moved (docs/protocol.md).
        """
        if self._refresh_interval <= 0 or self._fresh is None:
            return 0
        now = self._tick()
        sent = 0
        for channel, subscribers in self._subscribers.items():
            if channel.partition(":")[0] not in self._fresh_families:
                continue
            if now - self._sent_at.setdefault(channel, now) < self._refresh_interval:
                continue
            self._post_all(subscribers, channel, self.fresh_frame(channel, reuse=False), now)
            self._sent_at[channel] = now
            sent += 1
        return sent

    def channels(self) -> list[Event]:
        """Return the current event of every channel that has one."""
        return [frame.event for frame in self._current.values()]

    def attach(
        self,
        client: Client,
        channel: str,
        *,
        send_current: bool = True,
        recovered: bool | None = None,
        patches: bool = False,
    ) -> None:
        """Subscribe ``client`` to ``channel``; queue the current state unless it already has it.

        ``recovered``: said in the first frame of a resume. ``patches``: after that first frame,
        send the channel's changes as merge patches (keyed channels only; others go whole).
        """
        self._subscribers.setdefault(channel, {})[client] = None
        if client not in self._clients:
            self._clients[client] = None
            self._due.add(client, client.next_check(self._tick(), self._ping_interval))
        old = client.subscriptions.get(channel)
        was_patching = old is not None and old.patch_seq is not None
        keyed = self.catalog.spec_of(channel).keyed
        patch_seq = None
        if patches and keyed is not None:
            current = self.current(channel)
            patcher = self._patchers.get(channel)
            if patcher is None:
                patcher = self._patchers[channel] = Patcher(keyed)
                patcher.start(current.data, current.seq)
            patcher.subscribers += not was_patching
            patch_seq = current.seq
        elif was_patching:
            self._stop_patches(channel)
        client.follow(channel, recovered=recovered, patch_seq=patch_seq)
        if send_current:
            self._post_all((client,), channel, self.fresh_frame(channel), self._tick())

    def detach(self, client: Client, channel: str | None = None) -> bool:
        """Unsubscribe ``client`` from ``channel`` (from all, and forget it, with None); return whether it was."""
        if client not in self._clients or channel is not None and channel not in client.subscriptions:
            return False
        for name in list(client.subscriptions) if channel is None else [channel]:
            sub = client.unfollow(name)
            if sub is not None and sub.patch_seq is not None:
                self._stop_patches(name)
            subscribers = self._subscribers.get(name)
            if subscribers is not None:
                subscribers.pop(client, None)
                if not subscribers:
                    del self._subscribers[name]
        if channel is None:
            del self._clients[client]
            self._parked.discard(client)
            self._due.remove(client)
        return True

    def subscribed(self, client: Client, channel: str) -> bool:
        """Return whether ``client`` follows ``channel``."""
        return channel in client.subscriptions

    def subscriptions(self, client: Client) -> int:
        """Return how many channels ``client`` follows."""
        return len(client.subscriptions)

    def _stop_patches(self, channel: str) -> None:
        """One patch subscriber of ``channel`` fewer; at none, stop computing its patches."""
        patcher = self._patchers.get(channel)
        if patcher is not None:
            patcher.subscribers -= 1
            if patcher.subscribers <= 0:
                del self._patchers[channel]

    def subscriber_counts(self) -> dict[str, int]:
        """Return how many clients listen on each channel that has any."""
        return {channel: len(clients) for channel, clients in self._subscribers.items()}

    def subscriber_count(self, channel: str) -> int:
        """Return how many clients listen on ``channel``."""
        return len(self._subscribers.get(channel, ()))

    def _park(self, client: Client) -> None:
        """Look again soon at a client whose socket was full: one timer for all such clients."""
        self._parked.add(client)
        self._due.add(client, self._tick())  # the next sweep times how long it stays full
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(PARKED_RETRY, self._flush_parked)

    def _flush_parked(self) -> None:
        self._flush_timer = None
        for client in list(self._parked):
            client.flush()
            if not client.parked:
                self._parked.discard(client)
        if self._parked:
            self._flush_timer = asyncio.get_running_loop().call_later(PARKED_RETRY, self._flush_parked)

    def sweep(self) -> int:
        """Give each client that is due what it is owed (heartbeat, ping, parked frames); drop stuck or silent ones.

        Only clients whose moment came are looked at (see ``schedule``), with one heartbeat frame
        built for all of them. Returns how many were dropped.
        """
        now = self._tick()
        heartbeat = ws_frame(encode_heartbeat(self._clock()))
        reasons: dict[str, int] = {}
        for client in self._due.take(now):
            why = client.check(now, ping_interval=self._ping_interval, heartbeat=heartbeat)
            if why is None:
                self._due.add(client, client.next_check(now, self._ping_interval))
            else:
                client.drop(why)  # its handler detaches it
                reasons[why] = reasons.get(why, 0) + 1
        if reasons:  # one line per sweep, however many go
            logger.warning("dropped %s", "; ".join(f"{n} client(s): {why}" for why, n in reasons.items()))
        return sum(reasons.values())

    async def close_all(
        self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"server shutdown", *, timeout: float = 1.0
    ) -> None:
        """Close every client's socket with ``code``, all at once; abort those not closed within ``timeout``."""
        self.closing = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        clients = self.clients
        if clients:
            logger.info("closing %d client(s) with %d", len(clients), code)
            await asyncio.gather(*(c.close(code, message, timeout=timeout) for c in clients), return_exceptions=True)
