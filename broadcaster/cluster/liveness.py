"""Which nodes are alive, gone, forgotten or in trouble, measured on the view's own clock.

A node is *heard* when its record changes (its run or its ``last_seen``); a record from the
future counts as heard now, so a node whose clock runs ahead is still forgotten on time. A node
is *gone* while it has no live record (expired, or lost with the rest of the bus) and was heard
within ``forget_after``; then *forgotten*, and stays so until its record changes again. A live
node is *in trouble* when its record says so (writes refused, two runs under its name), when its
record has not moved for two of its refresh intervals (its writes do not land), or when the run
behind its name flips back to an earlier one (two runs share it and overwrite each other).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .bus import Record

logger = logging.getLogger(__name__)
Stamp = tuple[str, float]  # a record's run and last_seen: it changes at every refresh


@dataclass(frozen=True, slots=True)
class Seen:
    """One look at the records: who is alive, gone, and in trouble (level and why)."""

    alive: frozenset[str]
    gone: frozenset[str]
    problems: dict[str, tuple[str, str]]


class Liveness:
    """Judge nodes from successive looks at their records (see the module docstring)."""

    def __init__(self, *, forget_after: float, slack: float) -> None:
        self._forget_after = forget_after
        self._slack = slack  # how late a look may come (the scan interval)
        self._heard: dict[str, tuple[Stamp, float]] = {}  # node -> its record's stamp, when it last changed
        self._forgotten: dict[str, Stamp] = {}  # node -> the stamp it was forgotten with
        self._runs: dict[str, list[str]] = {}  # node -> the last runs seen behind its name
        self._flipped: dict[str, float] = {}  # node -> when its run last flipped back to an earlier one

    def look(self, records: dict[str, Record], live: dict[str, Record], now: float) -> Seen:
        """Judge every node from the hash's ``records`` and the ``live`` ones (record key present)."""
        problems: dict[str, tuple[str, str]] = {}
        for name, kept in records.items():
            record = live.get(name, kept)
            stamp = (record.instance, record.last_seen)
            if self._forgotten.get(name) == stamp:
                continue  # forgotten, and not heard from since
            self._forgotten.pop(name, None)
            heard = self._heard.get(name)
            if heard is None:  # first sight: a record from the future counts as heard now
                self._heard[name] = (stamp, now if name in live else min(now, record.last_seen))
            elif heard[0] != stamp:
                self._heard[name] = (stamp, now)
            if name in live:
                trouble = self._trouble(record, now)
                if trouble is not None:
                    problems[name] = trouble
        alive = frozenset(n for n in live if n in self._heard)
        gone = set()
        for name, (stamp, when) in list(self._heard.items()):
            if name in alive:
                continue
            if now - when <= self._forget_after:
                gone.add(name)  # no live record: expired, or lost from the hash with the rest of the bus
            else:
                del self._heard[name]
                self._forgotten[name] = stamp
                self._runs.pop(name, None)
                self._flipped.pop(name, None)
        return Seen(alive, frozenset(gone), problems)

    def ran(self, node: str, run: str, now: float) -> None:
        """Note the run behind ``node`` (from its record or its index); coming back after another is a flip."""
        runs = self._runs.setdefault(node, [])
        if not run or (runs and runs[-1] == run):
            return
        if run in runs:
            if node not in self._flipped:
                logger.warning("cluster view: two runs publish as node %s; each overwrites the other", node)
            self._flipped[node] = now
        runs.append(run)
        del runs[:-3]

    def _trouble(self, record: Record, now: float) -> tuple[str, str] | None:
        name = record.name
        self.ran(name, record.instance, now)
        flipped = self._flipped.get(name)
        if flipped is not None and now - flipped <= max(30.0, 10 * record.refresh_interval):
            return "error", f"two runs publish as {name}, each overwriting the other: give each node its own name"
        if record.problem:
            level = "error" if "same name" in record.problem else "degraded"
            return level, f"{record.problem}; its items are its last published state"
        quiet = now - self._heard[name][1]
        if quiet > 2 * record.refresh_interval + self._slack:
            return (
                "degraded",
                f"record not refreshed for {quiet:.0f}s (are its writes refused?); its items may be stale",
            )
        return None
