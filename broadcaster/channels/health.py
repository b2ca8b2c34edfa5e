"""The wording of system status: each service's level and message, from what its source reports.

``Health`` collects the facts (each source's own health object, the last poll answers, the
supervisor's crashed parts, channels that could not be published, the event log's trouble) and
``report`` turns them into ``{overall_status, timestamp, services, summary}`` (docs/protocol.md, "system-status").
A crashed part or a stuck channel makes its service ``error`` with the reason, whatever the
source last said, until it recovers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sources.adw_files import AdwFiles
from sources.adw_liveness import LivenessHealth
from sources.http import Reply
from sources.source import DatabaseWatch

from .._version import __version__
from ..config import Config
from ..config.rules import SELF
from ..core.spec import Catalog
from .status import SystemStatus

SCAN_BOUNDS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
CHECKING = "checking"  # the message of an entry whose first check has not answered
MAX_LISTED = 3  # problems named in one message; the count says how many there are
Entry = tuple[str, str, str, dict[str, Any]]  # service, level, message, details


class Reporter(Protocol):
    """A part with a system-status entry of its own that is not a local source (the backplane)."""

    def status_entry(self) -> Entry | None:
        """Return its entry as of now (None: nothing to say yet)."""
        ...


class Health:
    """Hold what system status is built from; ``report()`` words it."""

    def __init__(
        self,
        config: Config,
        status: SystemStatus,
        *,
        catalog: Catalog,
        adw: AdwFiles | None,
        databases: Sequence[DatabaseWatch],
        supervisor_problems: Callable[[], Mapping[str, list[str]]] = dict,
        event_log_problem: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._config = config
        self._status = status
        self._catalog = catalog
        self._adw = adw
        self._databases = list(databases)
        self._supervisor_problems = supervisor_problems
        self._event_log_problem = event_log_problem
        self.webhook: Reply | None = None
        self.checks: dict[str, Reply] = {}
        self.upstream: Reply | None = None
        self.api_problem: str | None = None
        self.api_routes = 0
        self.channel_problems: dict[str, str] = {}  # channel -> why its newest data could not be published
        self.checking: set[str] = set()  # services configured whose source has not reported yet
        self._reporters: list[Reporter] = []
        self._combine: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def plug(self, reporter: Reporter) -> None:
        """Report ``reporter``'s entry as well (after the local sources', before the checks')."""
        self._reporters.append(reporter)

    def combine_with(self, combine: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Publish ``combine(report)`` instead of this service's own report (a cluster view adds every node's)."""
        self._combine = combine

    def report(self) -> dict[str, Any]:
        """Set every service's entry from the current facts; return the system-status data."""
        entries = [
            self._self(),
            self._adw_files(),
            self._database(),
            self._webhook(),
            self._openapi(),
            self._upstream(),
            *(reporter.status_entry() for reporter in self._reporters),
            *self._checks(),
        ]
        problems = {service: list(p) for service, p in self._supervisor_problems().items()}
        for channel, why in sorted(self.channel_problems.items()):
            spec = self._catalog.specs.get(channel.partition(":")[0])
            service = spec.service if spec is not None else SELF
            problems.setdefault(service, []).append(f"{channel} not updated: {why}")
        for entry in entries:
            if entry is None:
                continue
            name, level, message, details = entry
            if name in self.checking:
                level, message = "unknown", CHECKING
            down = problems.pop(name, None)
            if down:
                level, message = "error", _listed(down)
            self._status.set(name, level, message, details)
        for name, down in problems.items():  # a service whose source has no entry of its own yet
            self._status.set(name, "error", _listed(down))
        report = self._status.report()
        return report if self._combine is None else self._combine(report)

    def _self(self) -> Entry:
        server = self._config.server
        problem = self._event_log_problem()
        details = {"version": __version__}
        if problem is not None:
            return SELF, "error", f"event log: {problem}", details
        return SELF, "healthy", f"serving on {server.host}:{server.port}", details

    def _adw_files(self) -> Entry | None:
        if self._adw is None:
            return None
        adw = self._adw.health
        details: dict[str, Any] = {"agents_dir": str(self._adw.agents_dir), "errors_total": adw.errors_total}
        if not adw.watching and adw.message.startswith("waiting"):
            return "adw_files", "degraded", adw.message, {"agents_dir": str(self._adw.agents_dir)}
        troubles = []
        if adw.broken:
            troubles.append(
                f"{len(adw.broken)} unreadable or skipped state file(s), last good state kept: "
                + _listed([why for _, why in sorted(adw.broken.items())])
            )
        if adw.trees_error is not None:
            troubles.append(adw.trees_error)
        if adw.watch_error is not None:
            troubles.append(adw.watch_error)
        scan = self._adw.liveness.health
        details["process_scan"] = _process_scan(scan, self._adw.liveness.interval)
        if scan.enabled and scan.error is not None:
            troubles.append(f"process scan: {scan.error}; status follows the state files")
        if troubles:
            return "adw_files", "degraded", "; ".join(troubles), details
        if not scan.enabled:
            return "adw_files", "healthy", f"{adw.message}; process scan off: status follows the state files", details
        return "adw_files", "healthy", adw.message, details

    def _database(self) -> Entry | None:
        if not self._databases:
            return None
        level, message = "healthy", "reading " + ", ".join(db.label for db in self._databases)
        for db in self._databases:
            h = db.health
            if not h.ok:
                level, message = ("degraded" if h.transient else "error"), h.message
                break
            if h.errors:
                level, message = "degraded", "; ".join(f"{name}: {why}" for name, why in sorted(h.errors.items()))
        return "database", level, message, {"files": [db.label for db in self._databases]}

    def _webhook(self) -> Entry | None:
        url = self._config.webhook.status_url
        if not url:
            return None
        if self.webhook is None:
            return "webhook", "unknown", CHECKING, {"url": url}
        problem = self.webhook.problem()
        return "webhook", "error" if problem else "healthy", problem or f"{url} answers", {"url": url}

    def _openapi(self) -> Entry | None:
        url = self._config.routes.openapi_url
        if not url:
            return None
        message = self.api_problem or f"{self.api_routes} routes from {url}"
        return "openapi", "degraded" if self.api_problem else "healthy", message, {"url": url}

    def _upstream(self) -> Entry | None:
        url = self._config.upstream.url
        if not url:
            return None
        if self.upstream is None:
            return "upstream", "unknown", CHECKING, {"url": url}
        if self.upstream.error is not None:
            return "upstream", "error", self.upstream.error, {"url": url}
        return "upstream", "healthy", f"{url} answers (HTTP {self.upstream.status})", {"url": url}

    def _checks(self) -> list[Entry | None]:
        out: list[Entry | None] = []
        for check in self._config.system_status.checks:
            reply = self.checks.get(check.name)
            if reply is None:
                out.append((check.name, "unknown", CHECKING, {"url": check.url}))
            else:
                problem = reply.problem()
                level = "error" if problem else "healthy"
                out.append((check.name, level, problem or f"HTTP {reply.status}", {"url": check.url}))
        return out


def _process_scan(scan: LivenessHealth, interval: float) -> str:
    """Word the process scan for the ``adw_files`` details."""
    if not scan.enabled:
        return "off"
    if scan.error is not None:
        return f"failing: {scan.error}"
    if scan.seconds is None:
        return "starting"
    # A bound, not the figure: status is data, and a figure that moves every look would be a change every look.
    bound = next((ms for ms in SCAN_BOUNDS_MS if scan.seconds * 1000 < ms), None)
    took = f"under {bound} ms" if bound is not None else f"over {SCAN_BOUNDS_MS[-1]} ms"
    return f"every {interval:g}s; the last look took {took}"


def _listed(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED])
    return shown if len(problems) <= MAX_LISTED else f"{shown}; and {len(problems) - MAX_LISTED} more"
