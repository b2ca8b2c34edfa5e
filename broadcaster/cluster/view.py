"""The cluster view: every node's newest data, merged, offered to this service's own pipeline.

A view node runs no sources of its own ADWs: what it serves is the union of what the nodes
publish (``merge``), recorded in its own event log with its own seq and epoch and throttled by
its own pipeline, so dashboards resume against it as against a single node, and the
no-change-no-message rule holds on merged data (a node republishing unchanged data sends
nothing). ``routes`` stays the view's own.

A node whose record expired keeps its last items, marked ``"node_status": "unreachable"``, and
an error entry in system status, until it publishes again or ``forget_after`` passes (the reader
then stops reading it, and its items leave). A live node in trouble (``Batch.problems``: its
writes refused, its record late, two runs under its name) has its items marked ``"stale"`` and
a ``{node}/node`` entry saying why: never silently merged, never shown as healthy.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..channels.adw_data import parse_time
from ..channels.specs import WEBHOOK_STATUS, adw_id_of, adw_state_channel
from ..channels.status import uptime
from ..core.events import Event
from ..core.snapshot import digest
from . import merge
from .follower import SHARED, Batch

MERGES: dict[str, Callable[[merge.Nodes, merge.Marks, merge.Tags], Any]] = {
    "workflows": merge.workflows,
    "adw-monitor": merge.monitor,
    "queue": merge.queue,
    "workflow-history": merge.history,  # through _history, which also keeps the rows for the cost trends
}


class Outlet(Protocol):
    """Where the view's channels go (``feeds.Feeds``): a failure to build one costs that channel only."""

    history_rows: list[dict[str, Any]]

    def offer(self, channel: str, build: Callable[[], Any]) -> None:
        """Offer ``build()`` as the newest data of ``channel``."""

    def refresh_status(self) -> None:
        """Publish system status again."""

    def reported(self, part: str) -> None:
        """Count ``part`` as having made its first report (system status waits for every part's)."""


class ClusterView:
    """Hold each node's newest data per channel; publish the merged channels a batch changed."""

    def __init__(
        self, outlet: Outlet, *, current: Callable[[], Iterable[Event]], clock: Callable[[], float] = time.time
    ) -> None:
        self._outlet = outlet
        self._current = current  # the view's own channels (restored from its event log at start)
        self._data: dict[str, dict[str, Any]] = {}  # channel -> node -> its newest data
        self._digests: dict[str, dict[str, str]] = {}  # channel -> node -> that data's digest
        self._tags = merge.Tags()
        self._since: dict[str, tuple[str, float]] = {}  # "node/service" -> (its status, since when: epoch s)
        self._clock = clock
        self._lists: dict[str, frozenset[str]] = {}  # node -> ADW ids its newest monitor lists
        self._alive: frozenset[str] = frozenset()
        self._gone: frozenset[str] = frozenset()
        self._problems: dict[str, tuple[str, str]] = {}
        self._marks: dict[str, str] = {}  # node -> "unreachable" or "stale": what its items say
        self._started = False

    @property
    def unreachable(self) -> frozenset[str]:
        """The nodes whose record expired and that are not forgotten yet."""
        return self._gone

    def apply(self, batch: Batch) -> None:
        """Take a read's data and the nodes' liveness; publish each merged channel that moved."""
        families: set[str] = set()
        adws: set[str] = set()
        for (node, channel), (value, known) in batch.data.items():
            self._data.setdefault(channel, {})[node] = value
            self._digests.setdefault(channel, {})[node] = known
            adw_id = adw_id_of(channel)
            if adw_id is not None:
                adws.add(adw_id)
                continue
            families.add(channel)
            if channel == "system-status":
                self._note_since(node, value)
            if channel == "adw-monitor":
                adws |= self._relist(node, value)
        if batch.alive is not None and (batch.alive, batch.gone, batch.problems) != (
            self._alive,
            self._gone,
            self._problems,
        ):
            before = self._alive | self._gone
            marks = {n: "stale" for n in batch.problems} | {n: "unreachable" for n in batch.gone}
            moved = (before ^ (batch.alive | batch.gone)) | {n for n in marks.keys() ^ self._marks.keys()}
            moved |= {n for n in marks if marks[n] != self._marks.get(n)}
            self._alive, self._gone, self._problems, self._marks = batch.alive, batch.gone, batch.problems, marks
            for node in before - (batch.alive | batch.gone):  # forgotten: its items leave
                adws |= self._relist(node, None)
                for table in (*self._data.values(), *self._digests.values()):
                    table.pop(node, None)
                self._tags.forget(node)
            levels = {n: level for n, (level, _) in batch.problems.items()} | dict.fromkeys(batch.gone, "error")
            for node, level in levels.items():  # since when each node entry has had its status
                if self._since.get(f"{node}/node", ("",))[0] != level:
                    self._since[f"{node}/node"] = (level, self._clock())
            for name in [n for n in self._since if n.endswith("/node") and n[:-5] not in levels]:
                del self._since[name]
            families.update(SHARED)
            adws |= {adw_id for node in moved for adw_id in self._lists.get(node, ())}
        if not self._started and batch.alive is not None:
            self._started = True  # restored ADWs no node holds any more get their empty state
            adws |= {adw_id for e in self._current() if (adw_id := adw_id_of(e.channel)) is not None and e.data}
        self._publish(families, adws)

    def system_status(self, own: dict[str, Any]) -> dict[str, Any]:
        """Return system status: one entry per node and service, each expired node in error, plus ``own``."""
        services = own.get("services")
        if not isinstance(services, dict):
            services = {}
        return merge.system_status(self._data.get("system-status", {}), self._marks, self._problems, services)

    def refreshed(self, data: Any) -> Any:
        """Return system-status data with the uptimes of the nodes' services as of now."""
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, dict):
            return data
        now = self._clock()
        fresh = dict(services)
        for name, entry in services.items():
            since = self._since.get(name)
            if since is not None and isinstance(entry, dict) and entry.get("status") == since[0]:
                fresh[name] = {**entry, **uptime(since[0], now - since[1])}
        return {**data, "services": fresh}

    def _note_since(self, node: str, report: Any) -> None:
        """Note since when each of ``node``'s services has had its status (its report says as of its timestamp)."""
        services = report.get("services") if isinstance(report, dict) else None
        stamp_text = report.get("timestamp") if isinstance(report, dict) else None
        when = parse_time(stamp_text) if isinstance(stamp_text, str) else None
        stamp = when.timestamp() if when is not None and when.tzinfo is not None else self._clock()
        for name in [n for n in self._since if n.startswith(f"{node}/") and n != f"{node}/node"]:
            if not isinstance(services, dict) or name[len(node) + 1 :] not in services:
                del self._since[name]
        for service, entry in services.items() if isinstance(services, dict) else ():
            status, up = (entry.get("status"), entry.get("uptime_seconds")) if isinstance(entry, dict) else (None, None)
            if not isinstance(status, str):
                continue
            kept = self._since.get(f"{node}/{service}")
            if kept is None or kept[0] != status:
                held = up if status == "healthy" and isinstance(up, int | float) and 0 <= up < 1e10 else 0.0
                self._since[f"{node}/{service}"] = (status, stamp - held)

    def _relist(self, node: str, monitor: Any) -> set[str]:
        """Note the ADWs ``node``'s monitor lists; return those that joined or left it."""
        items = monitor.get("workflows") if isinstance(monitor, dict) else None
        ids = (
            frozenset(i["adw_id"] for i in items if isinstance(i, dict) and isinstance(i.get("adw_id"), str))
            if isinstance(items, list)
            else frozenset()
        )
        old = self._lists.get(node, frozenset())
        if ids:
            self._lists[node] = ids
        else:
            self._lists.pop(node, None)
        for adw_id in old - ids:  # no longer this node's: its state of it is not read any more
            self._data.get(adw_state_channel(adw_id), {}).pop(node, None)
            self._digests.get(adw_state_channel(adw_id), {}).pop(node, None)
        return set(old ^ ids)

    def _publish(self, families: set[str], adws: set[str]) -> None:
        marks = dict(self._marks)
        for adw_id in sorted(adws):
            channel = adw_state_channel(adw_id)
            holders = [node for node, ids in self._lists.items() if adw_id in ids]
            nodes = self._data.get(channel, {})
            self._outlet.offer(channel, functools.partial(merge.adw_state, nodes, holders, marks))
        for family, build in MERGES.items():
            if family in families:
                nodes = self._data.get(family, {})
                known = self._digest(family)
                if family == "workflow-history":
                    self._outlet.offer(family, functools.partial(self._history, nodes, known))
                else:
                    self._outlet.offer(family, functools.partial(_with, known, build, nodes, marks, self._tags))
        if "webhook-status" in families:
            hook = merge.webhook(self._data.get("webhook-status", {}), marks)
            self._outlet.offer("webhook-status", lambda: WEBHOOK_STATUS.empty() if hook is None else hook)
        if "system-status" in families:
            self._outlet.refresh_status()

    def _digest(self, channel: str) -> str | None:
        """Return the digest of a merged channel from its parts' (hashing the union itself is most of a merge's cost).

        The merge is a pure function of each node's data (digested without clock-derived fields,
        as the merged data is) and of which nodes are gone: same parts, same merged state.
        """
        parts = self._digests.get(channel)
        if not parts:
            return None  # no node has it: the empty shape, digested as such
        return digest([channel, [[node, parts[node], self._marks.get(node)] for node in sorted(parts)]])

    def _history(self, nodes: merge.Nodes, known: str | None) -> tuple[dict[str, Any], str | None]:
        data = merge.history(nodes, self._marks, self._tags)
        self._outlet.history_rows = data["workflows"]  # the rows the cost trends are recomputed from
        return data, known


def _with(known: str | None, build: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """Return ``(build(*args), known)``: the data and the digest the outlet records it under."""
    return build(*args), known
