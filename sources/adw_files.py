"""ADW state files: ``<agents_dir>/{adw_id}/adw_state.json`` plus phase directories.

One watchfiles watcher covers ``agents_dir``; each batch of filesystem events names the ADW
directories that changed, and only those are read again, so one change costs the same with ten
ADWs or ten thousand. A torn or invalid state file keeps the last good state and is counted.
``trees_dir`` (git worktrees, often huge) is not watched; its top-level names are listed on a
timer, which is all the "paused" status needs.

Each directory is read by ``adw_read`` (confined, bounded, never blocking). Whether each ADW is
at work (its processes, its activity) is ``adw_liveness``'s: the files in phase directories are
watched for that alone (their changes move the activity, never a re-read).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import Change, awatch

from .adw_liveness import Liveness, phase_paths
from .adw_read import (
    ADW_ID,
    MAX_STATE_BYTES,
    STATE_FILE,
    AdwRecord,
    is_phase_dir,
    list_dirs,
    list_entries,
    read_dirs,
)
from .tasks import cancel_and_wait
from .values import Cleaner

__all__ = ["AdwFiles", "AdwFilesHealth"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AdwFilesHealth:
    """How the source is doing, for system status."""

    watching: bool = False
    message: str = "starting"
    errors_total: int = 0
    last_event_at: float | None = None
    broken: dict[str, str] = field(default_factory=dict)  # adw_id -> why its state file is unreadable
    trees_error: str | None = None  # why trees_dir could not be listed (the last listing is kept)
    watch_error: str | None = None  # why the watcher stopped, until a new one is installed


class AdwFiles:
    """Keep the newest good record of every ADW under ``agents_dir`` and say which ones changed."""

    def __init__(
        self,
        agents_dir: Path,
        trees_dir: Path,
        *,
        debounce_ms: int = 100,
        step_ms: int = 20,
        force_polling: bool = False,
        trees_poll_interval: float = 2.0,
        appear_poll_interval: float = 0.5,
        retry_delay: float = 0.1,
        max_state_bytes: int = MAX_STATE_BYTES,
        cleaner: Cleaner | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.agents_dir = agents_dir.absolute()  # watchfiles reports absolute paths
        self.trees_dir = trees_dir.absolute()
        self.health = AdwFilesHealth()
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._force_polling = force_polling
        self._trees_poll_interval = trees_poll_interval
        self._appear_poll_interval = appear_poll_interval
        self._retry_delay = retry_delay
        self._max_state_bytes = max_state_bytes
        self._cleaner = cleaner or Cleaner()
        self._records: dict[str, AdwRecord] = {}
        self._worktrees: frozenset[str] = frozenset()
        self._retry_at: dict[str, float] = {}
        # No process scan unless asked: the state files alone decide.
        self.liveness = liveness or Liveness(agents_dir, trees_dir, scan=False, interval=0.0, stall_after=0.0)

    @property
    def records(self) -> Mapping[str, AdwRecord]:
        """Return the known ADWs by id (read-only view)."""
        return self._records

    @property
    def worktrees(self) -> frozenset[str]:
        """Return the names of the directories in ``trees_dir`` as of the last look."""
        return self._worktrees

    async def changes(self) -> AsyncGenerator[set[str], None]:
        """Yield the ids of the ADWs whose record changed: first all of them, then as they change.

        The first yield comes at once, even when ``agents_dir`` does not exist yet (then it is
        empty). After that it follows the directory, waits for it to appear if missing, and
        yields the ids a disappearing directory took away. An empty set means only the source's
        health moved (e.g. ``trees_dir`` became readable again). Runs until the consumer stops.
        """
        if not self.agents_dir.is_dir():
            yield await self._scan()
        while True:
            if not self.agents_dir.is_dir():
                self.health.watching = False
                self.health.message = f"waiting for {self.agents_dir} to exist"
                if self._records:
                    gone = set(self._records)
                    self._records.clear()
                    self.health.broken.clear()
                    yield gone
                while not self.agents_dir.is_dir():
                    await asyncio.sleep(self._appear_poll_interval)
            hints: asyncio.Queue[Hint | None] = asyncio.Queue()
            watcher = asyncio.create_task(self._watch(hints), name=f"watch {self.agents_dir}")
            # awatch installs its watches in its first step and keeps what happens after that:
            # let it take that step, so nothing written during or after the scan is missed.
            await asyncio.sleep(0)
            self.health.watching = True
            self.health.message = f"watching {self.agents_dir}"
            self.health.watch_error = None
            try:
                yield await self._scan()
                async for changed in self._follow(hints):
                    yield changed
            finally:
                self.health.watching = False
                await cancel_and_wait(watcher)

    def failed(self, read: set[str]) -> bool:
        """Return False: a read names ADWs that changed; a broken state file is in ``health``, not a failed read."""
        return False

    async def _scan(self) -> set[str]:
        """Read every ADW directory (and list the worktrees, and the processes); return the ids that changed."""
        await self._poll_trees()
        if not self.agents_dir.is_dir():
            self.health.message = f"waiting for {self.agents_dir} to exist"
        ids = await asyncio.to_thread(list_entries, self.agents_dir) | set(self._records)
        return await self._read(ids, walk=True) | await self.liveness.look(self._records)

    async def _follow(self, hints: asyncio.Queue[Hint | None]) -> AsyncIterator[set[str]]:
        """Yield changed ids from filesystem events, retries and the timers, until the dir goes."""
        next_trees_poll = time.monotonic() + self._trees_poll_interval
        next_look = time.monotonic() + self.liveness.interval
        while True:
            now = time.monotonic()
            timers = [next_trees_poll, *self._retry_at.values()]
            if self.liveness.health.enabled:
                timers.append(next_look)
            try:
                hint = await asyncio.wait_for(hints.get(), max(0.0, min(timers) - now))
            except TimeoutError:
                hint = (set(), set())
            if hint is None:
                return
            ids, deep = set(hint[0]), set(hint[1])
            while not hints.empty():  # merge what piled up while the last batch was read
                more = hints.get_nowait()
                if more is None:
                    return
                ids |= more[0]
                deep |= more[1]
            now = time.monotonic()
            for adw_id, at in list(self._retry_at.items()):
                if at <= now:
                    ids.add(adw_id)
            flipped: set[str] = set()
            trees_error = self.health.trees_error
            if now >= next_trees_poll:
                next_trees_poll = now + self._trees_poll_interval
                flipped = await self._poll_trees()
            changed = (await self._read(ids) if ids else set()) | flipped
            if deep:
                paths = phase_paths(str(self.agents_dir), deep, is_phase_dir)
                changed |= await self.liveness.note(self._records, paths)
            scan_error = self.liveness.health.error
            if self.liveness.health.enabled and now >= next_look:
                next_look = now + self.liveness.interval
                changed |= await self.liveness.look(self._records)
            if changed or self.health.trees_error != trees_error or self.liveness.health.error != scan_error:
                yield changed  # a health change is news too

    async def _watch(self, hints: asyncio.Queue[Hint | None]) -> None:
        """Put the ids each batch of filesystem events names on ``hints`` (with phase-dir files); None at the end."""
        root = str(self.agents_dir)
        try:
            async for batch in awatch(
                self.agents_dir,
                watch_filter=ShallowFilter(root),
                debounce=self._debounce_ms,
                step=self._step_ms,
                force_polling=self._force_polling,
                poll_delay_ms=max(self._step_ms, 50),
                recursive=True,
                ignore_permission_denied=True,
            ):
                self.health.last_event_at = time.time()
                if any(path == root for _, path in batch) or not self.agents_dir.is_dir():
                    return
                ids: set[str] = set()
                deep: set[str] = set()
                for _, path in batch:
                    (deep if path.count(os.sep, len(root) + 1) >= 2 else ids).add(path)
                hints.put_nowait(({_top_name(root, path) for path in ids}, deep))
        except FileNotFoundError:
            return  # removed between the check and the watch; changes() waits for it again
        except Exception as exc:  # e.g. out of inotify watches or descriptors: try again shortly
            logger.error("watching %s failed: %s", self.agents_dir, exc)
            self.health.watch_error = f"watching {self.agents_dir} failed: {exc}"
            await asyncio.sleep(self._appear_poll_interval)
        finally:
            hints.put_nowait(None)

    async def _poll_trees(self) -> set[str]:
        """List ``trees_dir`` again; return the known ADWs whose worktree appeared or went."""
        try:
            worktrees = await asyncio.to_thread(list_dirs, self.trees_dir)
        except OSError as exc:  # unreadable, a symlink loop, out of descriptors: keep the last listing
            problem = f"{self.trees_dir}: cannot list: {exc.strerror or exc}"
            if self.health.trees_error != problem:
                logger.warning("%s (keeping the last listing)", problem)
            self.health.trees_error = problem
            return set()
        if self.health.trees_error is not None:
            logger.info("%s: readable again", self.trees_dir)
            self.health.trees_error = None
        flipped = worktrees ^ self._worktrees
        self._worktrees = worktrees
        return {adw_id for adw_id in flipped if adw_id in self._records}

    async def _read(self, ids: Iterable[str], *, walk: bool = False) -> set[str]:
        """Read the given ADW directories again; return the ids whose record changed."""
        wanted = {adw_id for adw_id in ids if ADW_ID.fullmatch(adw_id) and adw_id not in (".", "..")}
        results = await asyncio.to_thread(
            read_dirs, self.agents_dir, wanted, self._max_state_bytes, self._cleaner, walk=walk
        )
        changed: set[str] = set()
        now = time.monotonic()
        for adw_id, result in results.items():
            old = self._records.get(adw_id)
            self._retry_at.pop(adw_id, None)
            if result is None:  # not a directory (any more)
                if old is not None:
                    del self._records[adw_id]
                    changed.add(adw_id)
                self.health.broken.pop(adw_id, None)
                continue
            new = result
            if result.error is not None:
                # Keep the last good state. A torn read is often a writer mid-write: look again
                # shortly once, even if no further event comes.
                new = dataclasses.replace(result, state=old.state if old else None)
                if old is None or old.error is None:
                    self.health.errors_total += 1
                    self._retry_at[adw_id] = now + self._retry_delay
                    logger.warning(
                        "%s: %s (keeping the last good state)", self.agents_dir / adw_id / STATE_FILE, result.error
                    )
                self.health.broken[adw_id] = f"{self.agents_dir / adw_id / STATE_FILE}: {result.error}"
            else:
                self.health.broken.pop(adw_id, None)
            new = self.liveness.carry(old, new)
            if new != old:
                self._records[adw_id] = new
                changed.add(adw_id)
        return changed


Hint = tuple[set[str], set[str]]  # ADW ids to read again; paths of files in phase directories (activity)


class ShallowFilter:
    """Pass events for ``agents_dir`` itself, two levels below it, and files right inside phase directories.

    ``{id}/adw_state.json`` and ``{id}/adw_plan_iso`` are read again; the files in a phase
    directory (``{id}/adw_plan_iso/execution.log``, written constantly) only move its activity;
    anything deeper does not matter.
    """

    def __init__(self, root: str) -> None:
        self._root = root
        self._prefix = root.rstrip(os.sep) + os.sep

    def __call__(self, change: Change, path: str) -> bool:
        if path == self._root:
            return True
        if not path.startswith(self._prefix):
            return False
        depth = path.count(os.sep, len(self._prefix))
        if depth <= 1:
            return True
        return depth == 2 and is_phase_dir(path[len(self._prefix) :].split(os.sep, 2)[1])


def _top_name(root: str, path: str) -> str:
    return path[len(root) + 1 :].split(os.sep, 1)[0]
