"""Task helpers shared by sources and the broadcaster (which may import sources, not the reverse)."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


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
