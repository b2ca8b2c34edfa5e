"""What each source yields, turned into channel updates; plus what one channel needs of another.

Each channel is updated on its own: if building or recording one channel's data fails, that
channel keeps its last state and system status names it, while every other channel (other ADWs,
other tables) goes on. The wording of system status lives in ``health``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from sources.adw_files import AdwFiles
from sources.database import QueueData
from sources.http import Reply
from sources.source import DatabaseWatch
from sources.sqlite import ReadResult
from sources.values import Cleaner

from ..config import Config
from ..core.events import Event
from ..core.pipeline import Pipeline
from ..core.spec import ChannelSpec
from ..supervisor import Part
from . import db_data, service_data
from .adw_index import AdwIndex
from .health import Health
from .specs import (
    ADW_MONITOR,
    ADW_STATE,
    QUEUE,
    ROUTES,
    SYSTEM_STATUS,
    WEBHOOK_STATUS,
    WORKFLOW_HISTORY,
    WORKFLOWS,
    adw_id_of,
    adw_state_channel,
)

logger = logging.getLogger(__name__)

ADW_PART = "adw files"
CLUSTER_PART = "cluster view"


def database_part(db: DatabaseWatch) -> str:
    """Return the supervised part name of a database watch (its full path or URL: two files may share a name)."""
    return f"database {db.label}"


class Feeds:
    """Hold the sources' latest plain data and push the channels each change affects."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: Config,
        *,
        adw: AdwFiles | None,
        health: Health,
        databases: Sequence[DatabaseWatch] = (),
        cleaner: Cleaner | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._config = config
        self._adw = adw
        self._health = health
        self._cleaner = cleaner or Cleaner()
        self.history_rows: list[dict[str, Any]] = []
        self._queue_status: dict[str, str] = {}
        self._own_routes: list[dict[str, Any]] = []
        self._api_routes: list[dict[str, Any]] = []
        self._unconfirmed_adws: set[str] = set()
        self._index = AdwIndex(github_repo=config.adw.github_repo)
        self._first_adw_read = True  # the first read publishes both lists, even empty ones
        # Parts whose first report (or crash) has not come yet. The routes wait for the OpenAPI
        # poll, so a start-up never publishes a partial list; system status is published at once,
        # those parts' entries "checking" (unknown) until they report.
        # Each with the status entry that says "checking" meanwhile (None: the entry knows by itself
        # that no answer came yet, or there is none of its own).
        self._waiting: dict[str, str | None] = dict.fromkeys((database_part(db) for db in databases), "database")
        if adw is not None:
            self._waiting[ADW_PART] = "adw_files"
        else:
            self._waiting[CLUSTER_PART] = None  # a cluster view: its data comes from the nodes
        if config.webhook.status_url:
            self._waiting["webhook poll"] = None
        if config.routes.openapi_url:
            self._waiting["openapi poll"] = "openapi"
        if config.system_status.checks:
            self._waiting["checks poll"] = None
        if config.upstream.url:
            self._waiting["upstream poll"] = None

    def restored(self, events: Iterable[Event]) -> None:
        """Take note of the channels restored from the event log, to confirm them against the sources."""
        self._unconfirmed_adws = {
            adw_id for event in events if (adw_id := adw_id_of(event.channel)) is not None and event.data
        }

    # --- sources ------------------------------------------------------------------------------

    def adw_changed(self, changed: set[str]) -> None:
        """Update the ADW channels after the records of ``changed`` ADWs changed."""
        changed = changed | self._unconfirmed_adws  # restored ADWs whose directory went while we were down
        self._unconfirmed_adws = set()
        self._waiting.pop(ADW_PART, None)
        if self._adw is None:
            raise RuntimeError("adw_changed needs the ADW files: pass adw= to Feeds")
        records = self._adw.records
        for adw_id in sorted(changed):
            self.offer_built(ADW_STATE, adw_id, records.get(adw_id), channel=adw_state_channel(adw_id))
        wf_changed, mon_changed = self._index_update(changed)
        # Assembling a list is work per ADW: skip it when nothing of it moved (unless its last
        # publish failed, or this is the first read).
        problems, first = self._health.channel_problems, self._first_adw_read
        if wf_changed or first or WORKFLOWS.family in problems:
            self.offer_built(WORKFLOWS, self._index)
        if mon_changed or first or ADW_MONITOR.family in problems:
            self._monitor()
        self._first_adw_read = False
        self._system_status()

    async def database_read(self, db: DatabaseWatch, parts: dict[str, ReadResult]) -> None:
        """Update the queue and history channels from a database read (failed parts keep the last data).

        The history view (analytics over every row) is built in a worker thread: with thousands
        of rows it would stall every client for tens of milliseconds.
        """
        self._waiting.pop(database_part(db), None)
        queue = parts.get("queue")
        if queue is not None and isinstance(queue.data, QueueData):
            data = queue.data
            self.offer_built(QUEUE, data)
            queue_status = db_data.queue_status_by_adw(data.phases)
            if queue_status != self._queue_status:
                moved = {
                    i
                    for i in queue_status.keys() | self._queue_status.keys()
                    if queue_status.get(i) != self._queue_status.get(i)
                }
                self._queue_status = queue_status
                if self._index_update(moved)[1]:
                    self._monitor()
        history = parts.get("history")
        if history is not None and isinstance(history.data, list):
            rows = history.data
            try:
                view = await asyncio.to_thread(builder(WORKFLOW_HISTORY), rows)
            except Exception as exc:  # shown as this channel's problem, like any failure to build it
                self.offer(WORKFLOW_HISTORY.family, functools.partial(_raise, exc))
            else:
                self.history_rows = rows
                self.offer(WORKFLOW_HISTORY.family, lambda: view)
        self._system_status()

    def webhook_polled(self, replies: dict[str, Reply]) -> None:
        """Update webhook status from a poll of the webhook service."""
        reply = self._health.webhook = replies["webhook"]
        self._waiting.pop("webhook poll", None)
        self.offer_built(WEBHOOK_STATUS, reply, self._cleaner)
        self._system_status()

    def openapi_polled(self, replies: dict[str, Reply]) -> None:
        """Merge the routes of a fetched OpenAPI document (the last good one stays on failure)."""
        reply = replies["openapi"]
        self._waiting.pop("openapi poll", None)
        problem = reply.problem()
        if problem is None:
            try:
                self._api_routes = service_data.openapi_routes(self._cleaner.clean(orjson.loads(reply.body)))
            except (orjson.JSONDecodeError, ValueError) as exc:
                problem = f"{self._config.routes.openapi_url}: {exc}"
        if problem != self._health.api_problem and problem is not None:
            logger.warning("OpenAPI routes: %s", problem)
        self._health.api_problem = problem
        self._health.api_routes = len(self._api_routes)
        self._routes()
        self._system_status()

    def upstream_polled(self, replies: dict[str, Reply]) -> None:
        """Record whether the upstream answers (any HTTP status counts: it is there)."""
        self._health.upstream = replies["upstream"]
        self._waiting.pop("upstream poll", None)
        self._system_status()

    def checks_polled(self, replies: dict[str, Reply]) -> None:
        """Record the configured HTTP checks' answers."""
        self._health.checks = replies
        self._waiting.pop("checks poll", None)
        self._system_status()

    def own_routes(self, routes: list[dict[str, Any]]) -> None:
        """Set the service's own HTTP and WebSocket routes (published once the event log is open)."""
        self._own_routes = routes

    def started(self) -> None:
        """Publish what needs no source: the routes (when no OpenAPI document is configured), system status."""
        self._routes()
        self._system_status()

    def part_changed(self, part: Part) -> None:
        """A supervised part crashed or recovered: it counts as reported, and status says so."""
        self._waiting.pop(part.name, None)
        self._system_status()

    def refresh_status(self) -> None:
        """Publish system status again (the event log's health moved)."""
        self._system_status()

    def reported(self, part: str) -> None:
        """Count ``part`` as having made its first report; publish system status (its entry stops "checking")."""
        if part in self._waiting:
            del self._waiting[part]
            self._system_status()

    # --- derived channels ---------------------------------------------------------------------

    def offer(self, channel: str, build: Callable[[], Any]) -> None:
        """Offer ``build()`` as the newest data of ``channel``; a failure costs this channel only.

        ``build`` returns the data, or ``(data, digest)`` when it knows the digest (see ``adw_index``).
        """
        try:
            built = build()
            if isinstance(built, tuple):
                self._pipeline.update(channel, built[0], known_digest=built[1])
            else:
                self._pipeline.update(channel, built)
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
            if self._health.channel_problems.get(channel) != why:
                logger.error("%s: cannot publish (%s); keeping its last state", channel, why, exc_info=True)
            self._health.channel_problems[channel] = why
            return
        if self._health.channel_problems.pop(channel, None) is not None:
            logger.info("%s: publishing again", channel)

    def offer_built(self, spec: ChannelSpec, *source: Any, channel: str | None = None) -> None:
        """Offer its builder's data made from ``source`` as the newest of ``spec``'s channel (or ``channel``)."""
        self.offer(channel or spec.family, lambda: builder(spec)(*source))

    def _index_update(self, ids: set[str]) -> tuple[bool, bool]:
        """Rebuild the workflows and monitor items of ``ids``; return which of the two changed.

        A failure shows as the monitor channel's problem (the items are guarded one by one; this
        is the index's own failure).
        """
        if self._adw is None:
            return False, False
        try:
            self._index.scanning = self._adw.liveness.scanning  # when it flips, every ADW is in ``ids``
            return self._index.update(
                ids, self._adw.records, worktrees=self._adw.worktrees, queue_status=self._queue_status
            )
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
            logger.error("ADW items: cannot rebuild (%s)", why, exc_info=True)
            self._health.channel_problems[ADW_MONITOR.family] = why
            return False, False

    def _monitor(self) -> None:
        self.offer_built(ADW_MONITOR, self._index)

    def _routes(self) -> None:
        if "openapi poll" not in self._waiting:
            # The routes of the backend the dashboard talks to: the upstream's when there is one.
            own = [] if self._config.upstream.url else self._own_routes
            self.offer_built(ROUTES, own, self._api_routes)

    def _system_status(self) -> None:
        """Publish system status: every configured entry, those whose source has not reported yet "checking"."""
        self._health.checking = {service for service in self._waiting.values() if service is not None}
        self.offer_built(SYSTEM_STATUS, self._health)


def builder(spec: ChannelSpec) -> Callable[..., Any]:
    """Return the builder of ``spec``'s data (a TypeError for a channel that has none: a programming error)."""
    if spec.build is None:
        raise TypeError(f"{spec.family} has no builder")
    return spec.build


def _raise(exc: Exception) -> Any:
    raise exc
