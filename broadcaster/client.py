"""One connected WebSocket: a bounded mailbox and the task that writes it out.

The hub never awaits a client. It drops the channel's newest frame into the client's mailbox,
replacing an older one that was not written yet, and the client's own writer sends it. A slow
reader therefore costs at most one frame per channel. A client whose socket takes nothing for
``write_timeout`` seconds is dropped (the transport aborted, so its buffers are freed at once),
whichever path notices first: its own stuck write, or the hub's periodic sweep. The sweep also
sends protocol pings (aiohttp's own heartbeat is off: its timeout closes gracefully, and a
graceful close keeps a stalled peer's buffers for minutes) and drops a peer that does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web

from .protocol import Frame, encode_heartbeat

logger = logging.getLogger(__name__)

MAX_CONTROL_FRAMES = 16  # pongs waiting to be written; older ones are dropped past this


class Client:
    """Outbox and writer of one WebSocket connection."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        heartbeat_interval: float,
        write_timeout: float,
        transport: asyncio.Transport | None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws = ws
        self.heartbeat_interval = heartbeat_interval
        self.write_timeout = write_timeout
        self.closed_reason: str | None = None
        self.recovered: bool | None = None  # set for a resuming connection: said in its first frame
        self._opened = False  # has the first channel frame (the one with the epoch) gone out?
        self._transport = transport
        self._stuck_since: float | None = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._frames: dict[str, Frame] = {}
        self._control: deque[tuple[bytes, WSMsgType]] = deque(maxlen=MAX_CONTROL_FRAMES)
        self._heard_at = clock()  # when the peer last sent anything
        self._ping_out: float | None = None  # when the unanswered protocol ping went out
        self._wake = asyncio.Event()

    def post(self, channel: str, frame: Frame) -> None:
        """Queue ``frame`` as the newest message of ``channel``, replacing an unsent older one."""
        self._frames.pop(channel, None)  # re-insert so frames go out in the order they changed
        self._frames[channel] = frame
        self._wake.set()

    def post_control(self, frame: bytes, kind: WSMsgType = WSMsgType.TEXT) -> None:
        """Queue a reply to what the client sent (a text pong, a protocol PONG) or a protocol PING."""
        self._control.append((frame, kind))
        self._wake.set()

    def heard(self) -> None:
        """Record that the peer sent something: it is alive."""
        self._heard_at = self._clock()

    def keepalive(self, ping_interval: float, now: float | None = None) -> str | None:
        """Ping the peer once it has been quiet for ``ping_interval``; return why to drop it if a ping went unheard."""
        now = self._clock() if now is None else now
        if self._ping_out is not None:
            if self._heard_at >= self._ping_out:
                self._ping_out = None
            elif now - self._ping_out >= ping_interval:
                return f"no answer to a ping within {ping_interval:g}s"
            else:
                return None
        if now - self._heard_at >= ping_interval:
            self._ping_out = now
            self.post_control(b"", WSMsgType.PING)
        return None

    async def run(self) -> None:
        """Write queued frames until the socket closes; send a heartbeat when quiet. Runs as a task."""
        last_write = self._clock()
        while not self.ws.closed:
            quiet_for = self._clock() - last_write
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.heartbeat_interval - quiet_for))
            except TimeoutError:
                batch = [(encode_heartbeat(self._wall_clock()), WSMsgType.TEXT)]
            else:
                self._wake.clear()
                batch = [*self._control, *((self._payload(f), WSMsgType.TEXT) for f in self._frames.values())]
                self._control.clear()
                self._frames.clear()
            for frame, kind in batch:
                if not await self._write(frame, kind):
                    return
            last_write = self._clock()

    def _payload(self, frame: Frame) -> bytes:
        if self._opened:
            return frame.bytes  # the bytes every subscriber gets
        self._opened = True
        return frame.opening(self.recovered)

    async def _write(self, frame: bytes, kind: WSMsgType) -> bool:
        try:
            await asyncio.wait_for(self.ws.send_frame(frame, kind), self.write_timeout)
        except TimeoutError:
            self.drop(f"slow client: a write was stuck for {self.write_timeout:g}s")
            return False
        except ConnectionError:  # the peer went away; the reader side notices and cleans up
            return False
        return True

    def drop(self, reason: str) -> None:
        """Abort the connection at once (its socket cannot take even a close frame); say why in the log."""
        if self.closed_reason is None or not self.closed_reason.startswith("slow client"):
            self.closed_reason = reason
        logger.warning("dropping a client: %s", reason)
        if self._transport is not None:
            reset(self._transport)

    def stuck(self, now: float | None = None) -> bool:
        """Return whether the socket has held unsent bytes, without draining, for ``write_timeout`` seconds."""
        transport = self._transport
        if transport is None or transport.get_write_buffer_size() == 0:
            self._stuck_since = None
            return False
        now = self._clock() if now is None else now
        if self._stuck_since is None:
            self._stuck_since = now
        return now - self._stuck_since >= self.write_timeout

    def writer_done(self, task: asyncio.Task[None]) -> None:
        """Drop the connection if its writer crashed: a socket nobody writes to must not look alive."""
        if not task.cancelled() and task.exception() is not None:
            logger.error("a client's writer crashed", exc_info=task.exception())
            self.drop(f"writer crashed: {task.exception()!r}")

    async def close(
        self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"", *, timeout: float | None = None
    ) -> None:
        """Close the socket with ``code``; drop the connection if that does not finish within ``timeout``."""
        self.closed_reason = self.closed_reason or message.decode(errors="replace") or f"closed with {code}"
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), timeout or self.write_timeout)
        except (TimeoutError, ConnectionError):
            if self._transport is not None:
                reset(self._transport)


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
