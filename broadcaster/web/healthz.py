"""``GET /healthz``: 200 ``{"status": "ok"}`` while the event loop turns and the pipeline runs; else 503.

Cheap enough for a one-second probe: it reads two numbers. No data, no token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..channels.service_data import route
from .keys import SUPERVISOR
from .problems import problem

TICK = 0.5  # seconds between the watchdog's ticks
STALLED = 5.0  # a tick this late means the loop did not turn


class LoopWatch:
    """Notice a stalled event loop: a tick every TICK seconds, and how late the latest one was."""

    def __init__(self, stalled_after: float = STALLED) -> None:
        self.stalled_after = stalled_after
        self.last = time.monotonic()
        self.worst_late = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.last = time.monotonic()
        self._handle = asyncio.get_running_loop().call_later(TICK, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _tick(self) -> None:
        now = time.monotonic()
        self.worst_late = now - self.last - TICK
        self.last = now
        self._handle = asyncio.get_running_loop().call_later(TICK, self._tick)

    def stalled(self) -> float | None:
        """Return how long the loop did not turn, if that was more than ``stalled_after`` seconds."""
        late = max(self.worst_late, time.monotonic() - self.last - TICK)
        return late if late > self.stalled_after else None


WATCH = web.AppKey("loop_watch", LoopWatch)


async def healthz(request: web.Request) -> web.StreamResponse:
    stalled = request.app[WATCH].stalled()
    if stalled is not None:
        return problem(503, f"the event loop did not turn for {stalled:.1f}s")
    pipeline = request.app[SUPERVISOR].parts.get("pipeline")
    if pipeline is None:
        return problem(503, "the pipeline has not started")
    if pipeline.problem is not None:
        return problem(503, pipeline.problem)
    return web.json_response({"status": "ok"})


async def _watching(app: web.Application) -> AsyncIterator[None]:
    app[WATCH].start()
    yield
    app[WATCH].stop()


def add_healthz(app: web.Application) -> list[dict[str, Any]]:
    """Serve ``/healthz``; return its Route."""
    app[WATCH] = LoopWatch()
    app.cleanup_ctx.append(_watching)
    app.router.add_get("/healthz", healthz)  # GET and HEAD: the only requests that need no token
    return [route("/healthz", "GET", "healthz", "Liveness: the event loop turns, the pipeline runs", "", ["ops"])]
