"""Whether each ADW is at work: its processes (one look at the process table for all) and its activity.

``AdwFiles`` keeps one ``Liveness``. Each look (at start-up, then every ``interval`` seconds, off
the event loop) sets every record's ``pids`` and judges its ``quiet`` (no activity within
``stall_after``), and returns the ADWs whose pids or judgement moved: time passing is a change
here, so an agent that stops is reported within one interval even though no file changed.
Activity is a record's ``activity``: read with the directory, and moved forward by the watcher's
events in phase directories (``note``).

With scanning off, or while the process table cannot be read, nothing is judged: ``scanning`` is
False and the state file alone decides (``health`` says why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path

from .adw_read import AdwRecord, newest_mtime
from .processes import ProcessTable, Scan

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class LivenessHealth:
    """How the process scan is doing, for system status."""

    enabled: bool = False
    error: str | None = None  # why the process table could not be read at the last look
    seconds: float | None = None  # how long the last look took
    processes: int = 0  # processes it looked at
    looks: int = 0  # looks taken since start


class Liveness:
    """Processes and activity of the ADWs (see the module docstring)."""

    def __init__(
        self,
        agents_dir: Path,
        trees_dir: Path,
        *,
        scan: bool,
        interval: float,
        stall_after: float,
        clock: Callable[[], float] = time.time,
        table: ProcessTable | None = None,
    ) -> None:
        self.interval = interval
        self.stall_after = stall_after
        self._clock = clock
        self._table = (table or ProcessTable(agents_dir, trees_dir)) if scan else None
        self.health = LivenessHealth(enabled=scan)

    @property
    def scanning(self) -> bool:
        """Return whether processes are looked at and the last look worked (else the state file decides)."""
        return self._table is not None and self.health.error is None

    def judge(self, record: AdwRecord) -> AdwRecord:
        """Return ``record`` with ``quiet`` as of now."""
        quiet = self.scanning and (record.activity is None or self._clock() - record.activity >= self.stall_after)
        return record if record.quiet == quiet else dataclasses.replace(record, quiet=quiet)

    def carry(self, old: AdwRecord | None, new: AdwRecord) -> AdwRecord:
        """Return a freshly read ``new`` with what the reads do not see (pids, activity from events) kept, judged."""
        if old is not None:
            activity = new.activity if old.activity is None else max(old.activity, new.activity or old.activity)
            new = dataclasses.replace(new, pids=old.pids, activity=activity)
        return self.judge(new)

    async def note(self, records: MutableMapping[str, AdwRecord], paths: dict[str, set[str]]) -> set[str]:
        """Move the activity of the ADWs whose phase-directory files changed; return those whose record moved."""
        newest = await asyncio.to_thread(lambda: {i: newest_mtime(p) for i, p in paths.items()})
        changed = set()
        for adw_id, mtime in newest.items():
            record = records.get(adw_id)
            if record is None or mtime is None or (record.activity is not None and mtime <= record.activity):
                continue
            records[adw_id] = self.judge(dataclasses.replace(record, activity=mtime))
            if records[adw_id] != record:
                changed.add(adw_id)
        return changed

    async def look(self, records: MutableMapping[str, AdwRecord]) -> set[str]:
        """Look at the process table; set every record's pids and judgement; return the ids that moved."""
        if self._table is None:
            return set()
        was_scanning = self.scanning
        scan = await asyncio.to_thread(self._table.scan, list(records))
        self._note(scan)
        changed = set(records) if self.scanning != was_scanning else set()
        for adw_id, record in list(records.items()):
            pids = scan.pids.get(adw_id, ())
            new = self.judge(record if record.pids == pids else dataclasses.replace(record, pids=pids))
            if new != record:
                records[adw_id] = new
                changed.add(adw_id)
        return changed

    def _note(self, scan: Scan) -> None:
        health = self.health
        if scan.error != health.error:
            if scan.error is not None:
                logger.warning("process scan: %s (status follows the state files until it works)", scan.error)
            else:
                logger.info("process scan works again")
        health.error, health.seconds, health.processes = scan.error, scan.seconds, scan.processes
        health.looks += 1


def phase_paths(root: str, paths: Iterable[str], is_phase_dir: Callable[[str], bool]) -> dict[str, set[str]]:
    """Return, per ADW id, the paths of files inside its phase directories among ``paths``."""
    prefix = root.rstrip(os.sep) + os.sep
    found: dict[str, set[str]] = {}
    for path in paths:
        if path.startswith(prefix):
            parts = path[len(prefix) :].split(os.sep)
            if len(parts) == 3 and is_phase_dir(parts[1]):
                found.setdefault(parts[0], set()).add(path)
    return found
