"""``create_app(config)``: every subsystem wired in one place, each with its own cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from sources import database
from sources.adw_files import AdwFiles
from sources.http import Reply, poll
from sources.sqlite import Reader, SqliteWatch
from sources.tasks import cancel_and_wait

from .config import Config
from .events import EventLog
from .feeds import Feeds
from .fetch import HttpFetch
from .http import add_http_routes, origin_policy
from .hub import Hub
from .keys import ADW_FILES, CONFIG, DATABASES, EVENT_LOG, FEEDS, FETCH, HUB, PIPELINE, STATUS
from .pipeline import Pipeline
from .status import SystemStatus
from .store import CRASH_SEQ_GAP, EventStore, MemoryEventStore, SqliteEventStore
from .throttle import Throttle
from .ws import add_routes

logger = logging.getLogger(__name__)
T = TypeVar("T")


def create_app(config: Config) -> web.Application:
    """Build the application: hub, pipeline, sources and routes, started and stopped with it.

    Args:
        config: the validated configuration (see ``load_config``).
    """
    app = web.Application(middlewares=[origin_policy])
    app[CONFIG] = config
    hub = Hub()
    app[HUB] = hub
    app[EVENT_LOG] = log = EventLog(_store(config))
    app[PIPELINE] = pipeline = Pipeline(log, Throttle(config.broadcast.min_interval), hub)
    adw = config.adw
    app[ADW_FILES] = AdwFiles(
        adw.agents_dir,
        adw.trees_dir,
        debounce_ms=adw.debounce_ms,
        step_ms=adw.step_ms,
        force_polling=adw.force_polling,
        trees_poll_interval=adw.trees_poll_interval,
    )
    app[DATABASES] = databases = _databases(config)
    app[STATUS] = SystemStatus()
    app[FEEDS] = feeds = Feeds(pipeline, config, adw=app[ADW_FILES], databases=databases, status=app[STATUS])

    app.cleanup_ctx.append(_event_log)  # first in, last out: its final flush sees every event
    app.cleanup_ctx.append(background("pipeline", pipeline.run))
    app.cleanup_ctx.append(_http_session)
    for db in databases:  # before the ADW files, so the first monitor already knows queue statuses
        app.cleanup_ctx.append(feed(f"database {db.path.name}", db.changes, functools.partial(feeds.database_read, db)))
    app.cleanup_ctx.append(feed("adw files", app[ADW_FILES].changes, feeds.adw_changed))
    _add_pollers(app, config, feeds)
    app.on_shutdown.append(_close_sockets)

    routes = add_routes(app, config.server.path_prefixes) + add_http_routes(app)
    feeds.own_routes(routes)
    return app


def _store(config: Config) -> EventStore:
    c = config.event_log
    if c.path is None:
        return MemoryEventStore(keep_per_channel=c.keep_per_channel)
    return SqliteEventStore(
        c.path,
        flush_interval=c.flush_interval,
        batch_max=c.batch_max,
        keep_per_channel=c.keep_per_channel,
        max_age=c.max_age_hours * 3600,
    )


async def _event_log(app: web.Application) -> AsyncIterator[None]:
    """Open the event log and continue from it: seq numbers, epoch and every channel's last state."""
    log, hub = app[EVENT_LOG], app[HUB]
    loaded = await log.store.open()
    log.load(loaded.last, seq_gap=0 if loaded.clean else CRASH_SEQ_GAP)
    hub.epoch = loaded.epoch
    hub.seed(loaded.last.values())
    app[FEEDS].restored(loaded.last.values())
    app[FEEDS].started()
    async with running("event log", log.store.run()):
        yield
    await log.store.close()


def _databases(config: Config) -> list[SqliteWatch]:
    """Return one watch per configured database file, each with the readers it serves."""
    main, history = config.database.path, config.database.history_path
    files: dict[Any, dict[str, Reader]] = {}
    if main is not None:
        files[main] = {"queue": database.read_queue}
    if history is not None or main is not None:
        files.setdefault(history or main, {})["history"] = database.read_history
    return [SqliteWatch(path, readers, poll_interval=config.database.poll_interval) for path, readers in files.items()]


def _add_pollers(app: web.Application, config: Config, feeds: Feeds) -> None:
    """Poll each configured HTTP service; its answers go to its feed."""
    pollers: list[tuple[str, dict[str, str], float, float, Callable[[dict[str, Reply]], None]]] = [
        (
            "webhook poll",
            {"webhook": config.webhook.status_url},
            config.webhook.poll_interval,
            config.webhook.timeout,
            feeds.webhook_polled,
        ),
        (
            "openapi poll",
            {"openapi": config.routes.openapi_url},
            config.routes.poll_interval,
            config.routes.timeout,
            feeds.openapi_polled,
        ),
        (
            "checks poll",
            {c.name: c.url for c in config.system_status.checks},
            config.system_status.poll_interval,
            config.system_status.timeout,
            feeds.checks_polled,
        ),
    ]
    for name, urls, interval, timeout, publish in pollers:
        if all(urls.values()) and urls:  # "" is "not configured"
            changes = functools.partial(_poll, app, urls, interval, timeout)
            app.cleanup_ctx.append(feed(name, changes, publish, wait_first=False))


def _poll(
    app: web.Application, urls: dict[str, str], interval: float, timeout: float
) -> AsyncGenerator[dict[str, Reply], None]:
    return poll(app[FETCH], urls, interval=interval, timeout=timeout)  # the session exists once started


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trust_env=False) as session:
        app[FETCH] = HttpFetch(session)
        yield


@contextlib.asynccontextmanager
async def running(name: str, work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` as a task for the duration of the block; then cancel it and wait for it."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_report_crash)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


def background(
    name: str, run: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return a cleanup context that runs ``run()`` as a task from startup until cleanup."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with running(name, run()):
            yield

    return ctx


def feed(
    name: str,
    changes: Callable[[], AsyncGenerator[T, None]],
    publish: Callable[[T], None],
    *,
    wait_first: bool = True,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return a cleanup context that publishes what a source yields, from startup until cleanup.

    With ``wait_first`` the source's first yield (its initial read of local files) is published
    during startup, so the first client to connect already gets real data. Remote sources
    (HTTP polls) do not hold up startup.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        stream = changes()
        if wait_first:
            publish(await anext(stream))

        async def follow() -> None:
            async for item in stream:
                publish(item)

        async with running(name, follow()):
            yield
        await stream.aclose()  # runs the source's own cleanup even if follow() never started

    return ctx


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()
