"""Connection limits: ``[server] max_connections`` in all and ``max_connections_per_ip`` per address.

Counted over open WebSockets (the connections that stay); an upgrade past a limit is answered
503 (all) or 429 (this address) with a JSON ``detail`` before anything else, and the refusals are
logged at most once a minute, not once each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from .problems import problem

logger = logging.getLogger(__name__)
LOG_EVERY = 60.0  # seconds between log lines about refusals


class Limits:
    def __init__(self, total: int, per_ip: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.per_ip = total, per_ip
        self.open = 0
        self.by_ip: dict[str, int] = {}
        self.refused = 0
        self._clock = clock
        self._logged_at = float("-inf")
        self._unlogged = 0

    def admit(self, address: str) -> web.Response | None:
        """Count a new socket from ``address``; return the refusal to answer instead, if over a limit."""
        if self.open >= self.total:
            return self._refuse(503, f"the service holds its maximum of {self.total} connections; try again later")
        if self.by_ip.get(address, 0) >= self.per_ip:
            return self._refuse(429, f"at most {self.per_ip} connections per address ([server] max_connections_per_ip)")
        self.open += 1
        self.by_ip[address] = self.by_ip.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        """Forget a socket that ``admit`` counted."""
        self.open -= 1
        left = self.by_ip.get(address, 1) - 1
        if left > 0:
            self.by_ip[address] = left
        else:
            self.by_ip.pop(address, None)

    def _refuse(self, status: int, detail: str) -> web.Response:
        self.refused += 1
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at >= LOG_EVERY:
            logger.warning("refused %d connection(s) over a limit (latest: %s)", self._unlogged, detail)
            self._logged_at, self._unlogged = now, 0
        return problem(status, detail)


LIMITS = web.AppKey("limits", Limits)
