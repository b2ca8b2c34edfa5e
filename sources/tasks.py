"""Task helpers shared by sources and the broadcaster (which may import sources, not the reverse)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds have passed (None: no limit); return whether it is set.

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally when a cancellation arrives just
    as the event is set, so a loop around it never sees the cancellation and a service's
    shutdown waits for that task forever. ``asyncio.timeout`` tells its own expiry from a
    cancellation from outside.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()


async def cancel_and_wait(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and wait for it to end; log its error, if any, and carry on.

    The caller's own cancellation is never swallowed: if it arrives while waiting, it propagates.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        logger.exception("task %s failed while stopping", task.get_name())


async def cancel_all_and_wait(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel every task, then wait until all have ended; log their errors, if any.

    For a finally block of a task that is itself being cancelled: ``cancel_and_wait`` one by one
    would re-raise at the first child and leave the rest running.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            logger.error("task %s failed while stopping", task.get_name(), exc_info=result)
