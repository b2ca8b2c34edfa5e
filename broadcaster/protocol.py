"""The wire protocol: server frames encoded once as bytes, and replies to what clients send."""

from __future__ import annotations

from typing import Any

import orjson

from .channels import adw_id_of
from .clock import iso_utc
from .events import Event

PONG_TEXT = b"pong"


def encode_event(event: Event) -> bytes:
    """Encode ``event`` as the JSON text frame every subscriber of its channel receives."""
    message: dict[str, Any] = {
        "type": event.type,
        "data": event.data,
        "seq": event.seq,
        "timestamp": iso_utc(event.timestamp),
    }
    adw_id = adw_id_of(event.channel)
    if adw_id is not None:
        message["adw_id"] = adw_id
    return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)


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
        return orjson.dumps({"type": "pong", "timestamp": message.get("timestamp")})
    return None
