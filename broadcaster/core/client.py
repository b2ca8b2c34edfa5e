"""One connected WebSocket: frames written straight to its socket, or parked while it is full.

The guarantee: a slow reader costs at most its socket buffer plus one frame per channel, and
never delays anyone else. The mechanism: the hub hands every subscriber the same pre-built
WebSocket frame, and ``post`` writes it to the transport at once, in the publishing call, while
the transport holds less than ``high_water`` unsent bytes (writing never blocks then). Past that
the channel's newest frame is parked, replacing an older parked one, until the socket drains.
There is no task or timer per client or per message: the hub's one periodic sweep writes parked
frames once a socket drains, sends heartbeats to quiet sockets and protocol pings to quiet
peers, and drops (with a TCP reset, which frees the kernel's buffers too) a client whose socket
stayed past ``high_water`` for ``write_timeout`` seconds or which left a ping unanswered.

What a client follows is one ``Subscription`` per channel: whether its next frame is the first
on this socket (with the epoch, and ``recovered`` for a resume) and, for a patch subscriber, the
seq of the last frame it was sent (a patch applies only to that state).

``post_all`` is what every event costs per subscriber, so its common case (nothing parked, no
subscription owed a first frame or a patch, not closing) touches the client and its transport
only: everything else sets ``_careful`` and takes ``_post_carefully``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable

from aiohttp import WSCloseCode, WSMsgType, web

from .protocol import Frame, ws_frame

logger = logging.getLogger(__name__)

HIGH_WATER = 64 * 1024  # unsent bytes a socket may hold before frames are parked


class Socket(web.WebSocketResponse):
    """aiohttp's WebSocketResponse that tells its Client when a close begins (nothing may follow it).

    aiohttp closes on its own too (a close frame from the peer, an oversized frame): this is
    how the Client's writes learn of it without asking the socket on every write.
    """

    on_close: Callable[[], None] | None = None

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if self.on_close is not None:
            self.on_close()
        return await super().close(code=code, message=message, drain=drain)


class Subscription:
    """One client's following of one channel: what its next frame must carry."""

    __slots__ = ("opening", "patch_seq", "recovered")

    def __init__(self, recovered: bool | None, patch_seq: int | None) -> None:
        self.opening = True  # the next frame is the channel's first on this socket: it carries the epoch
        self.recovered = recovered  # said in that first frame when not None (a resume)
        self.patch_seq = patch_seq  # patch subscribers: the seq of the state the peer has; else None

    @property
    def plain(self) -> bool:
        """Return whether its frames are the bytes every plain subscriber gets."""
        return not self.opening and self.patch_seq is None


class Client:
    """Writes of one WebSocket connection, and what the sweep needs to know about it."""

    __slots__ = (
        "_careful",
        "_clock",
        "_closing",
        "_heard_at",
        "_over_since",
        "_owed",
        "_parked",
        "_ping_out",
        "_transport",
        "closed_reason",
        "heartbeat_interval",
        "high_water",
        "last_write",
        "subscriptions",
        "write_timeout",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        heartbeat_interval: float,
        write_timeout: float,
        transport: asyncio.Transport,
        high_water: int = HIGH_WATER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ws = ws
        if isinstance(ws, Socket):
            ws.on_close = self._closes
        self.heartbeat_interval = heartbeat_interval
        self.write_timeout = write_timeout
        self.high_water = high_water
        self.closed_reason: str | None = None
        self.subscriptions: dict[str, Subscription] = {}  # channel -> what it is owed
        self._owed = 0  # subscriptions that are not plain (a first frame or patches pending)
        self._transport = transport
        self._clock = clock
        self._parked: dict[str, Frame] = {}
        self._closing = False  # a close frame was (or is being) sent: nothing may follow it
        self._careful = False  # any of the above asks more than a plain write of the common frame
        self._over_since: float | None = None
        self._heard_at = self.last_write = clock()
        self._ping_out: float | None = None  # when the unanswered protocol ping went out

    def _settle(self) -> None:
        """Recompute ``_careful`` after a change of what the next write must consider."""
        self._careful = self._closing or bool(self._parked) or self._owed > 0

    def _closes(self) -> None:
        self._closing = self._careful = True

    def follow(self, channel: str, *, recovered: bool | None = None, patch_seq: int | None = None) -> None:
        """Subscribe to ``channel`` afresh: its next frame is the opening one (with the epoch).

        ``recovered``: said in that frame when not None. ``patch_seq``: send the channel as merge
        patches after it, from this seq (the state the peer has); None: whole.
        """
        old = self.subscriptions.get(channel)
        if old is not None and not old.plain:
            self._owed -= 1
        self.subscriptions[channel] = Subscription(recovered, patch_seq)
        self._owed += 1
        self._careful = True

    def unfollow(self, channel: str) -> Subscription | None:
        """Stop everything owed on ``channel`` (an unsubscribe); return its subscription, if it had one."""
        self._parked.pop(channel, None)
        sub = self.subscriptions.pop(channel, None)
        if sub is not None and not sub.plain:
            self._owed -= 1
        self._settle()
        return sub

    def _post_carefully(self, channel: str, frame: Frame, now: float) -> int:
        """Write or park ``frame`` for a client with something special pending; return the bytes written."""
        if self._closing or self._transport.is_closing():
            return 0  # nothing may follow a close frame; a lost connection is detached by its handler
        if self._parked or not self._writable():
            self._parked.pop(channel, None)  # re-insert so parked frames go out in the order they changed
            self._parked[channel] = frame
            self._careful = True
            return 0
        wire = self._wire(channel, frame)
        self._transport.write(wire)
        self.last_write = now
        self._settle()
        return len(wire)

    @property
    def parked(self) -> bool:
        """Return whether frames wait for the socket to drain."""
        return bool(self._parked)

    def post_control(self, payload: bytes, kind: WSMsgType = WSMsgType.TEXT) -> None:
        """Write a reply (a text pong, a protocol PONG), a heartbeat or a ping; dropped if the socket is full."""
        if self._writable():
            self._write(ws_frame(payload, kind))

    def flush(self) -> None:
        """Write parked frames while the socket takes them (the sweep calls this)."""
        while self._parked and self._writable():
            channel = next(iter(self._parked))
            self._write_frame(channel, self._parked.pop(channel))
        self._settle()

    def heard(self) -> None:
        """Record that the peer sent something: it is alive."""
        self._heard_at = self._clock()

    def check(self, now: float, *, ping_interval: float, heartbeat: bytes) -> str | None:
        """Do what one sweep owes this client; return why to drop it, if it must go.

        Writes parked frames the socket now takes, ``heartbeat`` (a whole frame) after
        ``heartbeat_interval`` of quiet, a protocol ping after ``ping_interval`` without hearing
        from the peer.
        """
        transport = self._transport
        if transport.get_write_buffer_size() > self.high_water:
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since >= self.write_timeout:
                return f"slow client: its socket took nothing for {self.write_timeout:g}s"
            return None
        self._over_since = None
        if self._parked:
            self.flush()
        if ping_interval > 0:
            if self._ping_out is not None:
                if self._heard_at >= self._ping_out:
                    self._ping_out = None
                elif now - self._ping_out >= ping_interval:
                    return f"no answer to a ping within {ping_interval:g}s"
            elif now - self._heard_at >= ping_interval:
                self._ping_out = now
                self.post_control(b"", WSMsgType.PING)
        if now - self.last_write >= self.heartbeat_interval and self._writable():
            self._write(heartbeat)  # a whole frame, built once per sweep for every client
        return None

    def next_check(self, now: float, ping_interval: float) -> float:
        """Return when ``check`` next has something to do: a heartbeat, a ping, or (socket full) at once."""
        if self._over_since is not None or self._parked:
            return now  # watched on every sweep until its socket drains or it is dropped
        due = self.last_write + self.heartbeat_interval
        if ping_interval > 0:
            due = min(due, (self._heard_at if self._ping_out is None else self._ping_out) + ping_interval)
        return due

    def drop(self, reason: str) -> None:
        """Reset the connection at once (its socket cannot take even a close frame); say why in the log."""
        self.closed_reason = self.closed_reason or reason
        logger.debug("dropping a client: %s", reason)  # the sweep logs one line for all it drops
        reset(self._transport)

    async def close(
        self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"", *, timeout: float | None = None
    ) -> None:
        """Close the socket with ``code``; drop the connection if that does not finish within ``timeout``."""
        self.closed_reason = self.closed_reason or message.decode(errors="replace") or f"closed with {code}"
        self._closes()
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), timeout or self.write_timeout)
        except (TimeoutError, ConnectionError):
            reset(self._transport)

    def _writable(self) -> bool:
        transport = self._transport
        return (
            not self._closing  # nothing may follow a close frame
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= self.high_water
        )

    def _write(self, data: bytes) -> None:
        self._transport.write(data)
        self.last_write = self._clock()

    def _write_frame(self, channel: str, frame: Frame) -> None:
        wire = self._wire(channel, frame)
        self._write(wire)
        tally = frame.tally
        if tally is not None:  # counted where the frame was made: two adds, no lookups
            tally[0] += 1
            tally[1] += len(wire)

    def _wire(self, channel: str, frame: Frame) -> bytes:
        sub = self.subscriptions.get(channel)
        if sub is None or sub.plain:
            return frame.wire  # the bytes every subscriber gets
        if sub.opening:
            sub.opening = False
            wire = ws_frame(frame.opening(sub.recovered))
            if sub.patch_seq is None:
                self._owed -= 1  # plain from now on
        else:
            # A patch only applies to the state the peer has: after a skipped frame (coalesced
            # while parked) or a refresh, the whole message.
            patch_wire = frame.patch_wire
            wire = patch_wire if patch_wire is not None and frame.base_seq == sub.patch_seq else frame.wire
        if sub.patch_seq is not None:
            sub.patch_seq = frame.event.seq
        return wire


def post_all(clients: Iterable[Client], channel: str, frame: Frame, now: float) -> list[Client]:
    """Write ``frame`` of ``channel`` to each client whose socket takes it, else park it; return those that parked.

    The per-client cost of every event, so one loop here rather than a method call per client:
    a client with nothing special (``_careful`` unset) and room in its socket costs two looks at
    its transport and one write of the bytes every plain subscriber gets. ``now``: the hub's
    clock. Frames written are counted in ``frame.tally``.
    """
    wire = frame.wire
    plain = others = other_bytes = 0  # frames of the common bytes; frames of their own (first ones, patches)
    parked: list[Client] = []
    for client in clients:
        transport = client._transport
        if client._careful or transport.is_closing() or transport.get_write_buffer_size() > client.high_water:
            size = client._post_carefully(channel, frame, now)
            if size:
                others += 1
                other_bytes += size
            elif client._parked:
                parked.append(client)
            continue
        transport.write(wire)
        client.last_write = now
        plain += 1
    tally = frame.tally
    if tally is not None:
        tally[0] += plain + others
        tally[1] += plain * len(wire) + other_bytes
    return parked


_LINGER_RESET = struct.pack("ii", 1, 0)


def reset(transport: asyncio.Transport) -> None:
    """Drop the connection with a TCP reset, freeing its buffers at once.

    ``abort()`` alone closes the descriptor, but the kernel then still tries to deliver what is
    queued (an orphaned socket holding its buffers for minutes); with a zero linger the close
    discards it and resets the connection.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # already closed, or not a TCP socket: abort() is all there is
    transport.abort()
