"""What each source yields, turned into channel updates; plus what one channel needs of another."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from sources.adw_files import AdwFiles
from sources.database import QueueData
from sources.http import Reply
from sources.sqlite import Part, SqliteWatch

from . import __version__, views
from .channels import adw_id_of, adw_state_channel
from .config import Config
from .events import Event
from .pipeline import Pipeline
from .status import SystemStatus

logger = logging.getLogger(__name__)


class Feeds:
    """Hold the sources' latest plain data and push the channels each change affects."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: Config,
        *,
        adw: AdwFiles,
        databases: Sequence[SqliteWatch] = (),
        status: SystemStatus | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._config = config
        self._adw = adw
        self._databases = list(databases)
        self._status = status or SystemStatus()
        self.history_rows: list[dict[str, Any]] = []
        self._queue_status: dict[str, str] = {}
        self._own_routes: list[dict[str, Any]] = []
        self._api_routes: list[dict[str, Any]] = []
        self._api_problem: str | None = None
        self._webhook: Reply | None = None
        self._checks: dict[str, Reply] = {}
        self._unconfirmed_adws: set[str] = set()
        # Aggregates (routes, system status) wait for each source's first report, so a start-up
        # never publishes a partial one; after a restart with nothing changed, nothing is sent.
        self._waiting = {"adw", *(f"db {db.path}" for db in self._databases)}
        if config.webhook.status_url:
            self._waiting.add("webhook")
        if config.routes.openapi_url:
            self._waiting.add("openapi")
        if config.system_status.checks:
            self._waiting.add("checks")

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
        self._waiting.discard("adw")
        records = self._adw.records
        for adw_id in sorted(changed):
            self._pipeline.update(adw_state_channel(adw_id), views.adw_state(adw_id, records.get(adw_id)))
        self._pipeline.update("workflows", views.workflows(records.values(), github_repo=self._config.adw.github_repo))
        self._monitor()
        self._system_status()

    def database_read(self, db: SqliteWatch, parts: dict[str, Part]) -> None:
        """Update the queue and history channels from a database read (failed parts keep the last data)."""
        self._waiting.discard(f"db {db.path}")
        queue = parts.get("queue")
        if queue is not None and isinstance(queue.data, QueueData):
            self._pipeline.update("queue", views.queue(queue.data))
            queue_status = views.queue_status_by_adw(queue.data.phases)
            if queue_status != self._queue_status:
                self._queue_status = queue_status
                self._monitor()
        history = parts.get("history")
        if history is not None and isinstance(history.data, list):
            self.history_rows = history.data
            self._pipeline.update("workflow-history", views.history(self.history_rows))
        self._system_status()

    def webhook_polled(self, replies: dict[str, Reply]) -> None:
        """Update webhook status from a poll of the webhook service."""
        self._webhook = replies["webhook"]
        self._waiting.discard("webhook")
        self._pipeline.update("webhook-status", views.webhook_status(self._webhook))
        self._system_status()

    def openapi_polled(self, replies: dict[str, Reply]) -> None:
        """Merge the routes of a fetched OpenAPI document (the last good one stays on failure)."""
        reply = replies["openapi"]
        self._waiting.discard("openapi")
        problem = reply.problem()
        if problem is None:
            try:
                self._api_routes = views.openapi_routes(orjson.loads(reply.body))
            except (orjson.JSONDecodeError, ValueError) as exc:
                problem = f"{self._config.routes.openapi_url}: {exc}"
        if problem != self._api_problem and problem is not None:
            logger.warning("OpenAPI routes: %s", problem)
        self._api_problem = problem
        self._routes()
        self._system_status()

    def checks_polled(self, replies: dict[str, Reply]) -> None:
        """Record the configured HTTP checks' answers."""
        self._checks = replies
        self._waiting.discard("checks")
        self._system_status()

    def own_routes(self, routes: list[dict[str, Any]]) -> None:
        """Set the service's own HTTP and WebSocket routes (published once the event log is open)."""
        self._own_routes = routes

    def started(self) -> None:
        """Publish what needs no source (the routes, when no OpenAPI document is configured)."""
        self._routes()

    # --- derived channels ---------------------------------------------------------------------

    def _monitor(self) -> None:
        self._pipeline.update(
            "adw-monitor",
            views.monitor(
                self._adw.records.values(),
                worktrees=self._adw.worktrees,
                queue_status=self._queue_status,
                github_repo=self._config.adw.github_repo,
            ),
        )

    def _routes(self) -> None:
        if "openapi" not in self._waiting:
            self._pipeline.update("routes", views.merge_routes(self._own_routes, self._api_routes))

    def _system_status(self) -> None:
        if self._waiting:
            return
        config, status = self._config, self._status
        status.set(
            "broadcaster", "healthy", f"serving on {config.server.host}:{config.server.port}", {"version": __version__}
        )

        adw = self._adw.health
        if not adw.watching and adw.message.startswith("waiting"):
            status.set("adw_files", "degraded", adw.message, {"agents_dir": str(self._adw.agents_dir)})
        elif adw.broken:
            first = sorted(adw.broken.items())[:3]
            status.set(
                "adw_files",
                "degraded",
                f"{len(adw.broken)} unreadable state file(s), last good state kept: "
                + "; ".join(f"{adw_id}: {why}" for adw_id, why in first),
                {"agents_dir": str(self._adw.agents_dir), "errors_total": adw.errors_total},
            )
        else:
            status.set(
                "adw_files",
                "healthy",
                adw.message,
                {"agents_dir": str(self._adw.agents_dir), "errors_total": adw.errors_total},
            )

        if self._databases:
            level, message = "healthy", "reading " + ", ".join(str(db.path) for db in self._databases)
            for db in self._databases:
                h = db.health
                if not h.ok:
                    level, message = ("degraded" if h.transient else "error"), h.message
                    break
                if h.errors:
                    level, message = "degraded", "; ".join(f"{name}: {why}" for name, why in sorted(h.errors.items()))
            status.set("database", level, message, {"files": [str(db.path) for db in self._databases]})

        if config.webhook.status_url and self._webhook is not None:
            problem = self._webhook.problem()
            status.set(
                "webhook",
                "error" if problem else "healthy",
                problem or f"{config.webhook.status_url} answers",
                {"url": config.webhook.status_url},
            )
        if config.routes.openapi_url:
            status.set(
                "openapi",
                "degraded" if self._api_problem else "healthy",
                self._api_problem or f"{len(self._api_routes)} routes from {config.routes.openapi_url}",
                {"url": config.routes.openapi_url},
            )
        for check in config.system_status.checks:
            reply = self._checks.get(check.name)
            if reply is not None:
                problem = reply.problem()
                status.set(
                    check.name, "error" if problem else "healthy", problem or f"HTTP {reply.status}", {"url": check.url}
                )
        self._pipeline.update("system-status", status.report())
