"""One connected WebSocket: a bounded mailbox and the task that writes it out.

The hub never awaits a client. It drops the channel's newest frame into the client's mailbox,
replacing an older one that was not written yet, and the client's own writer sends it. A slow
reader therefore costs at most one frame per channel; a write stuck for ``write_timeout`` seconds
closes that client alone.
"""

from __future__ import annotations

import asyncio
import logging
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
        abort: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws = ws
        self.heartbeat_interval = heartbeat_interval
        self.write_timeout = write_timeout
        self.closed_reason: str | None = None
        self.recovered: bool | None = None  # set for a resuming connection: said in its first frame
        self._opened = False  # has the first channel frame (the one with the epoch) gone out?
        self._abort = abort
        self._clock = clock
        self._wall_clock = wall_clock
        self._frames: dict[str, Frame] = {}
        self._control: deque[bytes] = deque(maxlen=MAX_CONTROL_FRAMES)
        self._wake = asyncio.Event()

    def post(self, channel: str, frame: Frame) -> None:
        """Queue ``frame`` as the newest message of ``channel``, replacing an unsent older one."""
        self._frames.pop(channel, None)  # re-insert so frames go out in the order they changed
        self._frames[channel] = frame
        self._wake.set()

    def post_control(self, frame: bytes) -> None:
        """Queue a reply (pong) to what the client sent."""
        self._control.append(frame)
        self._wake.set()

    async def run(self) -> None:
        """Write queued frames until the socket closes; send a heartbeat when quiet. Runs as a task."""
        last_write = self._clock()
        while not self.ws.closed:
            quiet_for = self._clock() - last_write
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.heartbeat_interval - quiet_for))
            except TimeoutError:
                batch = [encode_heartbeat(self._wall_clock())]
            else:
                self._wake.clear()
                batch = [*self._control, *(self._payload(frame) for frame in self._frames.values())]
                self._control.clear()
                self._frames.clear()
            for frame in batch:
                if not await self._write(frame):
                    return
            last_write = self._clock()

    def _payload(self, frame: Frame) -> bytes:
        if self._opened:
            return frame.bytes  # the bytes every subscriber gets
        self._opened = True
        return frame.opening(self.recovered)

    async def _write(self, frame: bytes) -> bool:
        try:
            await asyncio.wait_for(self.ws.send_frame(frame, WSMsgType.TEXT), self.write_timeout)
        except TimeoutError:
            self.closed_reason = f"slow client: a write was stuck for {self.write_timeout:g}s"
            logger.warning("closing %s", self.closed_reason)
            self._abort()  # the socket cannot take a close frame either; drop the connection
            return False
        except ConnectionError:  # the peer went away; the reader side notices and cleans up
            return False
        return True

    async def close(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"") -> None:
        """Close the socket with ``code``; drop the connection if the peer does not answer in time."""
        self.closed_reason = self.closed_reason or message.decode(errors="replace") or f"closed with {code}"
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), self.write_timeout)
        except TimeoutError:
            self._abort()
