"""The service's long-running parts, each a cleanup context: started with the app, supervised, stopped with it.

``background`` runs one coroutine (the pipeline, the sweep, the event log writer); ``follow_source``
hands what a ``Source`` yields to its feed and counts the reads. A crash is the supervisor's: it
is logged with its traceback, restarted with backoff and shown in system status.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from sources.source import Source
from sources.tasks import cancel_and_wait, wait_set

from .web.keys import COUNTERS, SUPERVISOR

logger = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT = 30.0  # longest a source's first read may hold start-up (a bad one never does: it fails fast)


def background(
    name: str, service: str, run: Callable[[], Awaitable[None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return a cleanup context that runs ``run()`` under the supervisor from startup until cleanup."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(app[SUPERVISOR].run(name, service, run), name=name)
        try:
            yield
        finally:
            await cancel_and_wait(task)

    return ctx


def follow_source(
    name: str,
    service: str,
    source: Source[T],
    publish: Callable[[T], None | Awaitable[None]],
    *,
    wait_first: bool = True,
    task_name: str | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return a cleanup context that publishes what ``source`` yields, supervised, from startup until cleanup.

    ``name`` names the part in logs and system status; ``task_name`` (default: ``name``) its task.

    With ``wait_first`` start-up waits (at most ``STARTUP_WAIT``) until the source's first yield
    (its initial read of local files) is published, or it crashed, so the first client to
    connect already gets real data. Remote sources (HTTP polls) do not hold up start-up.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        supervisor = app[SUPERVISOR]
        first = asyncio.Event()

        counters = app[COUNTERS]

        async def follow() -> None:
            stream = source.changes()
            try:
                async for item in stream:
                    done = publish(item)
                    if inspect.isawaitable(done):  # a feed may build its channels off the event loop
                        await done
                    supervisor.ok(name)
                    first.set()
                    counters.count(counters.reads, name)
                    if source.failed(item):
                        counters.count(counters.read_errors, name)
                    else:
                        counters.last_read[name] = time.time()
            finally:
                first.set()  # a crash counts as the first report: start-up goes on, status says why
                await stream.aclose()

        task = asyncio.create_task(supervisor.run(name, service, follow), name=task_name or name)
        try:
            if wait_first:
                if not await wait_set(first, STARTUP_WAIT):
                    logger.warning("%s: no first read after %gs; starting without it", name, STARTUP_WAIT)
            yield
        finally:
            await cancel_and_wait(task)

    return ctx
