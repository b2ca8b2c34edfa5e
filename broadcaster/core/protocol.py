"""The wire protocol: server frames encoded once as bytes, and replies to what clients send."""

from __future__ import annotations

import re
import struct
from typing import Any

import orjson
from aiohttp import WSMsgType

from .clock import iso_utc
from .events import Event

PONG_TEXT = b"pong"
_COUNT = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is true), within 64 bits


def parse_count(text: str) -> int | None:
    """Return ``text`` as a non-negative integer (a seq, a limit), or None if it is not one."""
    return int(text) if _COUNT.fullmatch(text) else None


def encode_event(
    event: Event,
    *,
    envelope: tuple[str, str] | None = None,
    epoch: str | None = None,
    recovered: bool | None = None,
) -> bytes:
    """Encode ``event`` as a JSON text frame; a connection's first frame also carries ``epoch``.

    ``envelope``: a field the channel's messages carry besides ``data`` (``Catalog.envelope``).
    """
    message: dict[str, Any] = {
        "type": event.type,
        "channel": event.channel,
        "data": event.data,
        "seq": event.seq,
        "timestamp": iso_utc(event.timestamp),
    }
    if envelope is not None:
        message[envelope[0]] = envelope[1]
    if epoch is not None:
        message["epoch"] = epoch
    if recovered is not None:
        message["recovered"] = recovered
    return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)


def encode_patch(event: Event, base_seq: int, patch: Any) -> bytes:
    """Encode ``event`` as a merge patch against the channel's state at ``base_seq`` (see ``patches``)."""
    message = {
        "type": event.type,
        "channel": event.channel,
        "seq": event.seq,
        "base_seq": base_seq,
        "patch": patch,
        "timestamp": iso_utc(event.timestamp),
    }
    return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)


def ws_frame(payload: bytes, kind: WSMsgType = WSMsgType.TEXT) -> bytes:
    """Return ``payload`` as one unmasked, uncompressed server WebSocket frame (RFC 6455 5.2)."""
    n = len(payload)
    first = 0x80 | int(kind)
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


class Frame:
    """An event encoded once for all subscribers, and at most once more as a connection's first frame.

    For a keyed channel that has patch subscribers the hub also gives it ``patch_wire``, the
    event as a merge patch against ``base_seq`` (encoded once for all of them).
    """

    __slots__ = ("_bytes", "_epoch", "_opening", "_wire", "base_seq", "envelope", "event", "patch_wire", "tally")

    def __init__(
        self, event: Event, epoch: str, tally: list[int] | None = None, envelope: tuple[str, str] | None = None
    ) -> None:
        self.event = event
        self.tally = tally  # [frames, bytes] written, of the channel's family (the service's counters)
        self.envelope = envelope  # a field the channel's messages carry besides data (``Catalog.envelope``)
        self._epoch = epoch
        self._bytes: bytes | None = None  # encoded on first use: a channel nobody follows costs nothing
        self._opening: bytes | None = None
        self._wire: bytes | None = None
        self.base_seq = -1
        self.patch_wire: bytes | None = None

    def set_patch(self, base_seq: int, patch: Any) -> None:
        """Carry the event as ``patch`` against the channel's state at ``base_seq`` too."""
        self.base_seq = base_seq
        self.patch_wire = ws_frame(encode_patch(self.event, base_seq, patch))

    @property
    def encoded(self) -> bytes:
        """Return the message as every subscriber gets it (encoded once, on first use)."""
        if self._bytes is None:
            self._bytes = encode_event(self.event, envelope=self.envelope)
        return self._bytes

    @property
    def wire(self) -> bytes:
        """Return the whole WebSocket frame every subscriber is written (built once, on first use)."""
        if self._wire is None:
            self._wire = ws_frame(self.encoded)
        return self._wire

    def opening(self, recovered: bool | None = None) -> bytes:
        """Return the frame as a connection's first message: with ``epoch`` (and ``recovered`` if given)."""
        if recovered is not None:  # only resuming connections ask; encode for this one
            return encode_event(self.event, envelope=self.envelope, epoch=self._epoch, recovered=recovered)
        if self._opening is None:
            self._opening = encode_event(self.event, envelope=self.envelope, epoch=self._epoch)
        return self._opening


def encode_heartbeat(ts: float) -> bytes:
    """Encode the application-level keep-alive sent on a quiet socket."""
    return orjson.dumps({"type": "heartbeat", "timestamp": iso_utc(ts)})


def reply_to(text: str) -> bytes | None:
    """Return the frame answering a client's text message, or None when it needs no answer.

    The bare text ``ping`` gets ``pong``; ``{"type": "ping", "timestamp": x}`` gets
    ``{"type": "pong", "timestamp": x}``; everything else (``client_ready``, unknown types,
    text that is not JSON) is ignored.
    """
    if text.strip() == "ping":
        return PONG_TEXT
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(message, dict) and message.get("type") == "ping":
        timestamp = message.get("timestamp")
        if not isinstance(timestamp, str | int | float | bool) or isinstance(timestamp, str) and len(timestamp) > 64:
            timestamp = None  # echo what identifies a ping, not a structure sent to make us encode it
        return orjson.dumps({"type": "pong", "timestamp": timestamp}, option=orjson.OPT_NON_STR_KEYS)
    return None
