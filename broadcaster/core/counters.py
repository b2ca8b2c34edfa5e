"""What the service counts as it works, as plain numbers (``web/metrics.py`` turns them into Prometheus).

Incremented on the live path, so they are dicts of ints keyed by channel family (``adw-state``
for every ``adw-state:{id}``) or source name: bounded, and a dict lookup and an add each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

CLOSE_REASONS = ("slow", "ping", "flood", "oversized", "shutdown", "peer")


def family(channel: str) -> str:
    """Return the channel family of a channel name (its label in metrics)."""
    return channel.partition(":")[0]


@dataclass(slots=True)
class Counters:
    sent: dict[str, list[int]] = field(default_factory=dict)  # family -> [messages, bytes] written to sockets
    recorded: dict[str, int] = field(default_factory=dict)  # family -> events recorded
    coalesced: dict[str, int] = field(default_factory=dict)  # family -> events the throttle replaced unsent
    closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLOSE_REASONS, 0))
    reads: dict[str, int] = field(default_factory=dict)  # source -> reads handed on
    read_errors: dict[str, int] = field(default_factory=dict)  # source -> reads that failed
    last_read: dict[str, float] = field(default_factory=dict)  # source -> epoch seconds of its last good read
    upstream: dict[str, int] = field(default_factory=dict)  # "2xx" ... "5xx", "error" -> requests
    backplane: dict[str, int] = field(default_factory=dict)  # outcome -> entries (published, dropped, ...)
    latency: Callable[[float], None] | None = None  # observes change-to-publish seconds

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n
