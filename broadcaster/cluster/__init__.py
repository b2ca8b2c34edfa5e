"""Several machines through Redis Streams: nodes publish their channels' events (``publisher``).

``add_backplane`` makes a node's publisher and hooks it to the pipeline. The cluster view that reads every node's
streams is the rest of issue 13 and not built yet.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..config import Config
from ..events import Event
from ..health import Health
from .publisher import Publisher

__all__ = ["Publisher", "add_backplane", "node_name"]


def node_name(configured: str) -> str:
    """Return the node's name: the configured one, else the host name (made safe for Redis keys)."""
    return configured or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "node"


def add_backplane(
    config: Config,
    *,
    current: Callable[[], list[Event]],
    listeners: list[Callable[[Event], None]],
    health: Health,
    refresh_status: Callable[[], None],
) -> Publisher:
    """Publish this node's events to ``[backplane] url``; return the publisher (run it supervised)."""
    b = config.backplane
    name = node_name(b.node)
    address = f"{config.server.host}:{config.server.port}"

    def record() -> dict[str, Any]:
        return {"name": name, "version": __version__, "address": address, "last_seen": time.time()}

    def on_state(level: str, message: str) -> None:
        health.backplane = (level, message)
        refresh_status()

    publisher = Publisher(
        b.url,
        name,
        current=current,
        record=record,
        keep=config.event_log.keep_per_channel,
        queue_max=b.queue_max,
        refresh_interval=b.refresh_interval,
        node_timeout=b.node_timeout,
        on_state=on_state,
    )
    listeners.append(publisher.offer)
    health.backplane = publisher.state
    return publisher
