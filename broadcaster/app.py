"""``create_app(config)``: every subsystem wired in one place, each with its own cleanup context.

Every long-running task runs under the app's ``Supervisor``: a crash is logged with its
traceback, restarted with backoff, and shown in system status until the part recovers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sources import database, postgres
from sources.adw_files import AdwFiles
from sources.adw_liveness import Liveness
from sources.http import Poll, Reply
from sources.source import DatabaseWatch
from sources.sqlite import Query, SqliteWatch
from sources.tasks import cancel_and_wait
from sources.values import Cleaner

from .alerts import add_alerts
from .channels.clock_values import ClockValues
from .channels.feeds import ADW_PART, CLUSTER_PART, Feeds, database_part
from .channels.health import Health
from .channels.specs import CATALOG
from .channels.status import SystemStatus
from .cluster import add_backplane, add_cluster_view, view_config
from .config import Config
from .config.rules import SELF
from .core.counters import Counters
from .core.events import EventLog
from .core.hub import Hub
from .core.pipeline import Pipeline
from .core.sqlite_store import SqliteEventStore
from .core.store import EventStore, MemoryEventStore
from .core.throttle import Throttle
from .errors import StartupError
from .running import background, follow_source
from .supervisor import Supervisor
from .web.auth import TOKEN_KEY, load_token, token_check
from .web.fetch import HttpFetch
from .web.guards import HANDSHAKES_KEY, Handshakes, host_check, origin_policy
from .web.healthz import add_healthz
from .web.http import add_http_routes
from .web.keys import ADW_FILES, CONFIG, COUNTERS, DATABASES, EVENT_LOG, FEEDS, FETCH, HUB, PIPELINE, STATUS, SUPERVISOR
from .web.limits import LIMITS, Limits
from .web.metrics import add_metrics
from .web.mux import add_mux_routes
from .web.problems import json_errors
from .web.protocol_docs import add_doc_routes
from .web.proxy import add_proxy
from .web.static_files import add_static_routes
from .web.ws import add_routes

logger = logging.getLogger(__name__)
SWEEP_INTERVAL = 1.0  # seconds between sweeps over the clients (parked frames, heartbeats, pings, drops)


def create_app(config: Config) -> web.Application:
    """Build the application: hub, pipeline, sources and routes, started and stopped with it.

    Args:
        config: the validated configuration (see ``load_config``).
    """
    if config.backplane.view == "cluster":
        config = view_config(config)
    app = web.Application(middlewares=[host_check, origin_policy, token_check, json_errors])
    app[CONFIG] = config
    app[TOKEN_KEY] = load_token(config.server)
    app[LIMITS] = Limits(config.server.max_connections, config.server.max_connections_per_ip)
    app[HANDSHAKES_KEY] = Handshakes(config.server.handshake_timeout)
    cleaner = Cleaner(config.redaction.keys, patterns=config.redaction.patterns)
    hub, log, pipeline, fresh = _add_flow(app, config, cleaner)
    feeds, health = _add_feeds(app, config, cleaner, log, pipeline)

    app.cleanup_ctx.append(_event_log)  # first in, last out: its final flush sees every event
    app.cleanup_ctx.append(background("pipeline", SELF, pipeline.run))
    app.cleanup_ctx.append(background("client sweep", SELF, functools.partial(_sweep, hub, sweep_interval(config))))
    _add_backplane(app, config, feeds, health, fresh)
    app.cleanup_ctx.append(_http_session)
    for db in app[DATABASES]:  # before the ADW files, so the first monitor already knows queue statuses
        app.cleanup_ctx.append(
            follow_source(
                database_part(db),
                "database",
                db,
                functools.partial(feeds.database_read, db),
                task_name=f"database {db.label.rsplit('/', 1)[-1]}",
            )
        )
    adw = app.get(ADW_FILES)
    if adw is not None:
        app.cleanup_ctx.append(follow_source(ADW_PART, "adw_files", adw, feeds.adw_changed))
    _add_pollers(app, config, feeds)
    alerts, delivery, alert_routes = add_alerts(
        app, config, pipeline=pipeline, log=log, health=health, clean=cleaner.clean, refresh_status=feeds.refresh_status
    )
    app.cleanup_ctx.append(background("alerts", "alerts", alerts.run))  # after the event log: continues from it
    if delivery.destinations:
        app.cleanup_ctx.append(background("alert delivery", "alerts", delivery.run))
    app.on_shutdown.append(_close_sockets)
    _add_routes(app, config, feeds, alert_routes)
    return app


def _add_flow(app: web.Application, config: Config, cleaner: Cleaner) -> tuple[Hub, EventLog, Pipeline, ClockValues]:
    """Wire the flow: supervisor, status, counters, hub, event log and the pipeline between them."""
    app[SUPERVISOR] = Supervisor()
    app[STATUS] = status = SystemStatus()
    fresh = ClockValues(status, lambda: app[FEEDS].history_rows)  # the rows the feeds read last
    app[COUNTERS] = counters = Counters()
    app[HUB] = hub = Hub(
        catalog=CATALOG,
        fresh=fresh,
        refresh_interval=config.broadcast.refresh_interval,
        ping_interval=config.server.ping_interval,
        sweep_interval=sweep_interval(config),
        sent=counters.sent,
    )
    app[EVENT_LOG] = log = EventLog(_store(config, cleaner), catalog=CATALOG)
    app[PIPELINE] = pipeline = Pipeline(log, Throttle(config.broadcast.min_interval), hub, counters)
    return hub, log, pipeline, fresh


def _add_feeds(
    app: web.Application, config: Config, cleaner: Cleaner, log: EventLog, pipeline: Pipeline
) -> tuple[Feeds, Health]:
    """Make the sources (none of its own on a cluster view: the nodes' come from Redis) and the feeds."""
    view = config.backplane.view == "cluster"
    adw = None if view else _adw_files(config, cleaner)
    if adw is not None:
        app[ADW_FILES] = adw
    app[DATABASES] = databases = [] if view else _databases(config, cleaner)
    supervisor = app[SUPERVISOR]
    health = Health(
        config,
        app[STATUS],
        catalog=CATALOG,
        adw=adw,
        databases=databases,
        supervisor_problems=supervisor.problems,
        event_log_problem=log.problem,
    )
    app[FEEDS] = feeds = Feeds(pipeline, config, adw=adw, health=health, databases=databases, cleaner=cleaner)
    supervisor.on_change = feeds.part_changed
    if isinstance(log.store, SqliteEventStore):
        log.store.on_problem = feeds.refresh_status
    return feeds, health


def _add_backplane(app: web.Application, config: Config, feeds: Feeds, health: Health, fresh: ClockValues) -> None:
    """Follow the nodes on Redis (a cluster view), or publish this node's channels there."""
    hub, counters = app[HUB], app[COUNTERS]
    if config.backplane.view == "cluster":
        reader, take = add_cluster_view(
            config,
            feeds,
            current=hub.channels,
            health=health,
            fresh=fresh,
            part=CLUSTER_PART,
            counts=counters.backplane,
        )
        app.cleanup_ctx.append(follow_source(CLUSTER_PART, "backplane", reader, take))
    elif config.backplane.url:
        publisher = add_backplane(
            config,
            current=hub.channels,
            listeners=app[PIPELINE].listeners,
            health=health,
            refresh_status=feeds.refresh_status,
            counts=counters.backplane,
        )
        app.cleanup_ctx.append(background("backplane", "backplane", publisher.run))


def _add_routes(app: web.Application, config: Config, feeds: Feeds, more: list[dict[str, Any]]) -> None:
    """Add the service's own routes (the routes channel lists them, with ``more``), then the upstream's catch-all."""
    prefixes = config.server.path_prefixes
    routes = add_routes(app, prefixes) + add_mux_routes(app, prefixes) + add_http_routes(app) + more
    routes += add_static_routes(app) + add_doc_routes(app, prefixes, upstream=bool(config.upstream.url))
    routes += add_healthz(app)
    routes += add_metrics(app, app[COUNTERS], upstream=bool(config.upstream.url))
    feeds.own_routes(routes)
    if config.upstream.url:
        add_proxy(app, config.upstream)  # last: the service's own paths always win


def _adw_files(config: Config, cleaner: Cleaner) -> AdwFiles:
    adw = config.adw
    return AdwFiles(
        adw.agents_dir,
        adw.trees_dir,
        debounce_ms=adw.debounce_ms,
        step_ms=adw.step_ms,
        force_polling=adw.force_polling,
        trees_poll_interval=adw.trees_poll_interval,
        max_state_bytes=adw.max_state_bytes,
        cleaner=cleaner,
        liveness=Liveness(
            adw.agents_dir,
            adw.trees_dir,
            scan=adw.process_scan,
            interval=adw.process_scan_interval,
            stall_after=adw.stall_after,
        ),
    )


def _store(config: Config, cleaner: Cleaner) -> EventStore:
    c = config.event_log
    if c.path is None:
        return MemoryEventStore(keep_per_channel=c.keep_per_channel)
    return SqliteEventStore(
        c.path,
        catalog=CATALOG,
        flush_interval=c.flush_interval,
        batch_max=c.batch_max,
        keep_per_channel=c.keep_per_channel,
        max_age=c.max_age_hours * 3600,
        max_pending=c.max_pending,
        cleaner=cleaner,
    )


async def _event_log(app: web.Application) -> AsyncIterator[None]:
    """Open the event log and continue from it: seq numbers, epoch and every channel's last state."""
    log, hub = app[EVENT_LOG], app[HUB]
    loaded = await log.store.open()
    log.load(loaded.last, floor=loaded.floor)
    hub.epoch = loaded.epoch
    hub.seed(loaded.last.values())
    app[FEEDS].restored(loaded.last.values())
    app[FEEDS].started()
    task = asyncio.create_task(app[SUPERVISOR].run("event log writer", SELF, log.store.run), name="event log")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await log.store.close()


def _databases(config: Config, cleaner: Cleaner) -> list[DatabaseWatch]:
    """Return one watch per configured database (file, or PostgreSQL), each with the readers it serves."""
    main, history = config.database.path, config.database.history_path
    cleaner = cleaner.bounded(config.database.max_value_bytes)  # a 20 MB error_message is not 20 MB frames
    d = config.database
    if d.url:
        pg_readers: dict[str, postgres.PgQuery] = {
            "queue": functools.partial(postgres.read_queue, cleaner=cleaner),
            "history": postgres.HistoryReader(cleaner),
        }
        password = _password(d.password_file)
        watch = postgres.PostgresWatch(
            d.url, pg_readers, password=password, poll_interval=d.poll_interval, listen=d.listen
        )
        return [watch]
    files: dict[Any, dict[str, Query]] = {}
    if main is not None:
        files[main] = {"queue": functools.partial(database.read_queue, cleaner=cleaner)}
    if history is not None or main is not None:
        files.setdefault(history or main, {})["history"] = database.HistoryReader(cleaner)
    return [SqliteWatch(path, readers, poll_interval=config.database.poll_interval) for path, readers in files.items()]


def _password(path: Path | None) -> str | None:
    """Return the PostgreSQL password from ``[database] password_file`` (its first line), if one is set."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise StartupError(
            f"[database] password_file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _add_pollers(app: web.Application, config: Config, feeds: Feeds) -> None:
    """Poll each configured HTTP service; its answers go to its feed."""
    pollers: list[tuple[str, str, dict[str, str], float, float, Callable[[dict[str, Reply]], None]]] = [
        (
            "webhook poll",
            "webhook",
            {"webhook": config.webhook.status_url},
            config.webhook.poll_interval,
            config.webhook.timeout,
            feeds.webhook_polled,
        ),
        (
            "openapi poll",
            "openapi",
            {"openapi": config.routes.openapi_url},
            config.routes.poll_interval,
            config.routes.timeout,
            feeds.openapi_polled,
        ),
        (
            "upstream poll",
            "upstream",
            {"upstream": config.upstream.url},
            config.upstream.poll_interval,
            config.system_status.timeout,  # a look like the other checks, not a request's 30 s wait
            feeds.upstream_polled,
        ),
        (
            "checks poll",
            SELF,
            {c.name: c.url for c in config.system_status.checks},
            config.system_status.poll_interval,
            config.system_status.timeout,
            feeds.checks_polled,
        ),
    ]

    async def fetch(url: str, *, timeout: float) -> Reply:
        return await app[FETCH](url, timeout=timeout)  # the session exists once started

    for name, service, urls, interval, timeout, publish in pollers:
        if all(urls.values()) and urls:  # "" is "not configured"
            source = Poll(fetch, urls, interval=interval, timeout=timeout)
            app.cleanup_ctx.append(follow_source(name, service, source, publish, wait_first=False))


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trust_env=False) as session:
        app[FETCH] = HttpFetch(session)
        yield


def sweep_interval(config: Config) -> float:
    """Return the seconds between sweeps: at most SWEEP_INTERVAL, and half the shortest period they serve."""
    periods = [config.server.heartbeat_interval]
    periods += [p for p in (config.server.ping_interval, config.broadcast.refresh_interval) if p > 0]
    return min(SWEEP_INTERVAL, *(p / 2 for p in periods))


async def _sweep(hub: Hub, interval: float) -> None:
    """Sweep the clients that are due (heartbeats, pings, drops) and refresh quiet clock channels, on one timer."""
    while True:
        await asyncio.sleep(interval)
        hub.sweep()
        hub.refresh()


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()
