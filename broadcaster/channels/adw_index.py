"""The ``workflows`` and ``adw-monitor`` channels kept per ADW: a change rebuilds only what it touched.

Each ADW's WorkflowExecution and AdwWorkflowStatus are built, encoded and digested when that ADW
changes (its record, its worktree, its queue status), then kept with their place in the sort
order (``bisect`` on a sort key). A channel's data is the kept items in order as
``orjson.Fragment``s, so the message is assembled from bytes already encoded instead of
re-encoding every ADW, and its digest is made from the items' digests (volatile fields left
out), not from re-encoding the whole list. What remains per change and per ADW is copying:
joining N fragments and N digests.

An empty channel is digested the ordinary way, so its empty shape is still "no change".
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from sources.adw_read import AdwRecord

from ..core.clock import now_iso
from ..core.deltas import Items
from . import adw_data
from .adw_data import empty_summary

SortKey = tuple[Any, ...]


class Clocks(NamedTuple):
    """What an adw-monitor item's clock-derived fields are computed from (``clock_values.monitor``)."""

    open_start: str | None  # its start while unfinished: ``duration_seconds`` moves with the clock
    quiet_since: float | None  # its activity while stalled: ``stalled_seconds`` moves with the clock


def _descending(text: str) -> tuple[int, ...]:
    """Return a key that sorts ``text`` descending (a missing value last)."""
    return (*(-ord(c) for c in text), 1)


@dataclass(frozen=True, slots=True)
class _Item:
    key: SortKey
    wire: orjson.Fragment
    digest: bytes
    status: str | None = None
    stalled: bool = False
    clocks: Clocks | None = None  # what its clock-derived fields are computed from (None: it has none)


class _Sorted:
    """Items by adw_id, and their ids, encoded forms and digests in sort order (parallel lists).

    A change moves one entry of each list (``bisect`` on the sort keys, a C-level memmove), so
    assembling a channel is copying three lists, not a Python step per ADW.
    """

    def __init__(self) -> None:
        self.items: dict[str, _Item] = {}
        self._keys: list[SortKey] = []
        self._ids: list[str] = []
        self._wires: list[orjson.Fragment] = []
        self._digests: list[bytes] = []
        self._clocks: list[Clocks | None] = []

    def put(self, adw_id: str, item: _Item | None) -> _Item | None:
        """Set (or with None, remove) the item of ``adw_id``; return the one it replaced."""
        old = self.items.pop(adw_id, None)
        if old is not None:
            at = bisect.bisect_left(self._keys, old.key)
            for column in (self._keys, self._ids, self._wires, self._digests, self._clocks):
                del column[at]
        if item is not None:
            self.items[adw_id] = item
            at = bisect.bisect_left(self._keys, item.key)
            self._keys.insert(at, item.key)
            self._ids.insert(at, adw_id)
            self._wires.insert(at, item.wire)
            self._digests.insert(at, item.digest)
            self._clocks.insert(at, item.clocks)
        return old

    def fragments(self) -> Items:
        return Items(self._wires, list(self._ids), list(self._clocks))  # copies: the lists change with each put

    def digest(self, extra: bytes = b"") -> str:
        return hashlib.blake2b(b"".join(self._digests) + extra, digest_size=16).hexdigest()


def _item(
    data: dict[str, Any],
    key: SortKey,
    volatile: Iterable[str] = (),
    status: str | None = None,
    stalled: bool = False,
    clocks: Clocks | None = None,
) -> _Item:
    stable = {k: v for k, v in data.items() if k not in volatile}
    item_digest = hashlib.blake2b(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
    return _Item(key, orjson.Fragment(orjson.dumps(data)), item_digest, status, stalled, clocks)


def _differs(old: _Item | None, new: _Item | None) -> bool:
    if old is None or new is None:
        return old is not new
    return old.digest != new.digest or old.key != new.key


class AdwIndex:
    """Keep every ADW's channel items; ``update`` rebuilds those of the ADWs named."""

    def __init__(self, *, github_repo: str = "") -> None:
        self._github_repo = github_repo
        self.scanning = False  # processes are looked at (the source says; see ``adw_data.status_of``)
        self._workflows = _Sorted()
        self._monitor = _Sorted()
        self._summary = empty_summary()

    def update(
        self,
        ids: Iterable[str],
        records: Mapping[str, AdwRecord],
        *,
        worktrees: frozenset[str],
        queue_status: Mapping[str, str],
    ) -> tuple[bool, bool]:
        """Rebuild the items of ``ids`` from their records (an ADW with no state leaves both channels).

        Returns whether anything of ``workflows`` and of ``adw-monitor`` changed (volatile
        fields aside), so a caller can skip assembling a channel that did not.
        """
        wf_changed = mon_changed = False
        for adw_id in ids:
            record = records.get(adw_id)
            if record is None or record.state is None:
                wf_changed |= _differs(self._workflows.put(adw_id, None), None)
                old = self._monitor.put(adw_id, None)
                self._count(old, None)
                mon_changed |= _differs(old, None)
                continue
            start = _descending(adw_data.text(record.state.get("start_time")) or "")
            execution = adw_data.workflow_execution(record, github_repo=self._github_repo)
            item = None if execution is None else _item(execution, (start, adw_id))
            wf_changed |= _differs(self._workflows.put(adw_id, item), item)
            status = adw_data.monitor_item(
                record,
                in_worktree=adw_id in worktrees,
                queue_status=queue_status.get(adw_id),
                github_repo=self._github_repo,
                now=None,
                scanning=self.scanning,
            )
            rank = adw_data.sort_rank(status["status"])
            clocks: Clocks | None = Clocks(
                status["start_time"] if status["end_time"] is None else None,
                record.activity if status["stalled"] else None,
            )
            if clocks == (None, None):
                clocks = None
            volatile = ("duration_seconds", "stalled_seconds")
            new = _item(status, (rank, start, adw_id), volatile, status["status"], status["stalled"], clocks)
            old = self._monitor.put(adw_id, new)
            self._count(old, new)
            mon_changed |= _differs(old, new)
        return wf_changed, mon_changed

    def _count(self, old: _Item | None, new: _Item | None) -> None:
        for item, step in ((old, -1), (new, 1)):
            if item is not None:
                self._summary["total"] += step
                if item.status in self._summary:
                    self._summary[item.status] += step
                self._summary["stalled"] += step * item.stalled

    def workflows(self) -> tuple[list[Any], str | None]:
        """Return the workflows data and its digest (None: digest it the ordinary way)."""
        if not self._workflows.items:
            return [], None
        return self._workflows.fragments(), self._workflows.digest()

    def monitor(self) -> tuple[dict[str, Any], str | None]:
        """Return the adw-monitor data and its digest (None: digest it the ordinary way)."""
        data = {"workflows": self._monitor.fragments(), "summary": dict(self._summary), "last_updated": now_iso()}
        if not self._monitor.items:
            return data, None
        return data, self._monitor.digest(orjson.dumps(self._summary, option=orjson.OPT_SORT_KEYS))
