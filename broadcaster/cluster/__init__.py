"""Several machines through Redis Streams: nodes publish (``publisher``), views read and merge (``view``).

``add_backplane`` makes a node's publisher and hooks it to the pipeline; ``add_cluster_view``
makes a view's reader and the view that merges what it reads. Keys on Redis: ``bus``.

The ``redis`` package is the ``cluster`` extra: it is imported only when one of those two runs
(a backplane is configured), and its absence is then a start-up error naming the extra.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..channels.clock_values import ClockValues
from ..channels.health import Health
from ..config import Config
from ..core.events import Event
from ..errors import StartupError

if TYPE_CHECKING:
    from .follower import BusFollower
    from .publisher import Publisher
    from .view import Outlet

__all__ = ["add_backplane", "add_cluster_view", "node_name", "view_config"]
EXTRA = "pip install 'adw-broadcaster[cluster]'"


def require_redis() -> None:
    """Raise ``StartupError`` naming the ``cluster`` extra unless the ``redis`` package is installed."""
    if importlib.util.find_spec("redis") is None:
        raise StartupError(f"[backplane] needs the redis package, which is not installed: {EXTRA}")


def node_name(configured: str) -> str:
    """Return the node's name: the configured one, else the host name (made safe for Redis keys)."""
    return configured or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "node"


def view_config(config: Config) -> Config:
    """Return a cluster view's configuration: without the webhook poll (its webhook status is the nodes')."""
    return dataclasses.replace(config, webhook=dataclasses.replace(config.webhook, status_url=""))


def add_backplane(
    config: Config,
    *,
    current: Callable[[], list[Event]],
    listeners: list[Callable[[Event], None]],
    health: Health,
    refresh_status: Callable[[], None],
    counts: dict[str, int],
) -> Publisher:
    """Publish this node's events to ``[backplane] url``; return the publisher (run it supervised)."""
    require_redis()
    from .publisher import Publisher  # redis is imported only when a backplane is configured
    from .redis_backplane import RedisBackplane

    b = config.backplane
    name = node_name(b.node)
    address = f"{config.server.host}:{config.server.port}"

    def record() -> dict[str, Any]:
        return {"name": name, "version": __version__, "address": address, "last_seen": time.time()}

    def on_state(level: str, message: str) -> None:
        refresh_status()

    publisher = Publisher(
        RedisBackplane(b.url, socket_timeout=5),
        name,
        current=current,
        record=record,
        keep=config.event_log.keep_per_channel,
        queue_max=b.queue_max,
        refresh_interval=b.refresh_interval,
        node_timeout=b.node_timeout,
        on_state=on_state,
        counts=counts,
        max_entry_bytes=b.max_entry_bytes,
    )
    listeners.append(publisher.offer)
    health.plug(publisher)
    return publisher


def add_cluster_view(
    config: Config,
    outlet: Outlet,
    *,
    current: Callable[[], list[Event]],
    health: Health,
    fresh: ClockValues,
    part: str,
    counts: dict[str, int],
) -> tuple[BusFollower, Callable[[Any], None]]:
    """Read every node's streams from ``[backplane] url``; return the reader and what takes its batches.

    ``part`` names the reader in system status, which waits for its first report.
    """
    require_redis()
    from .follower import BusFollower  # redis is imported only when a backplane is configured
    from .redis_backplane import RedisBackplane
    from .view import ClusterView

    b = config.backplane
    view = ClusterView(outlet, current=current)
    health.combine_with(view.system_status)
    fresh.also_services(view.refreshed)

    def on_state(level: str, message: str) -> None:
        outlet.refresh_status()

    # Look at the node records often enough that a node whose record expired is marked soon after.
    reader = BusFollower(
        RedisBackplane(b.url, socket_timeout=10),
        forget_after=b.forget_after,
        scan_interval=min(1.0, b.node_timeout / 10),
        on_state=on_state,
        counts=counts,
        max_entry_bytes=b.max_entry_bytes,
    )
    health.plug(reader)

    def take(batch: Any) -> None:
        view.apply(batch)
        outlet.reported(part)

    return reader, take
