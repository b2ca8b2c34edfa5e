"""``create_app(config)``: every subsystem wired in one place, each with its own cleanup context."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from sources.adw_files import AdwFiles
from sources.tasks import cancel_and_wait

from . import views
from .channels import adw_state_channel
from .config import Config
from .events import EventLog
from .hub import Hub
from .keys import ADW_FILES, CONFIG, HUB, PIPELINE
from .pipeline import Pipeline
from .throttle import Throttle
from .ws import add_routes

logger = logging.getLogger(__name__)
T = TypeVar("T")


def create_app(config: Config) -> web.Application:
    """Build the application: hub, pipeline, sources and routes, started and stopped with it.

    Args:
        config: the validated configuration (see ``load_config``).
    """
    app = web.Application()
    app[CONFIG] = config
    hub = Hub()
    app[HUB] = hub
    app[PIPELINE] = Pipeline(EventLog(), Throttle(config.broadcast.min_interval), hub)
    adw = config.adw
    app[ADW_FILES] = AdwFiles(
        adw.agents_dir,
        adw.trees_dir,
        debounce_ms=adw.debounce_ms,
        step_ms=adw.step_ms,
        force_polling=adw.force_polling,
        trees_poll_interval=adw.trees_poll_interval,
    )
    app.cleanup_ctx.append(background("pipeline", lambda: app[PIPELINE].run()))
    app.cleanup_ctx.append(feed("adw files", lambda: app[ADW_FILES].changes(), lambda ids: publish_adw(app, ids)))
    app.on_shutdown.append(_close_sockets)
    add_routes(app, config.server.path_prefixes)
    return app


def background(
    name: str, run: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return a cleanup context that runs ``run()`` as a task from startup until cleanup."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        task.add_done_callback(_report_crash)
        yield
        await cancel_and_wait(task)

    return ctx


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())


def feed(
    name: str, changes: Callable[[], AsyncIterator[T]], publish: Callable[[T], None]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return a cleanup context that publishes what a source yields, from startup until cleanup.

    The source's first yield (its initial read) is published during startup, so the first
    client to connect already gets real data rather than an empty shape.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        stream = changes()
        publish(await anext(stream))

        async def follow() -> None:
            async for item in stream:
                publish(item)

        task = asyncio.create_task(follow(), name=name)
        task.add_done_callback(_report_crash)
        yield
        await cancel_and_wait(task)

    return ctx


def publish_adw(app: web.Application, changed: set[str]) -> None:
    """Update the ADW file channels after the records of ``changed`` ADWs changed."""
    source, pipeline, github_repo = app[ADW_FILES], app[PIPELINE], app[CONFIG].adw.github_repo
    for adw_id in sorted(changed):
        pipeline.update(adw_state_channel(adw_id), views.adw_state(adw_id, source.records.get(adw_id)))
    records = source.records.values()
    pipeline.update("workflows", views.workflows(records, github_repo=github_repo))
    pipeline.update("adw-monitor", views.monitor(records, worktrees=source.worktrees, github_repo=github_repo))


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()
