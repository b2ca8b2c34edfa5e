"""Which processes belong to which ADW: one look at the process table for all of them (psutil).

A process belongs to an ADW when its command line contains the ADW id, or its working directory
is inside ``trees/{adw_id}`` or ``agents/{adw_id}`` (docs/protocol.md, "adw-monitor"). The
service's own process never counts. A process that vanishes mid-look or whose details the
operating system refuses (another user's working directory) costs that detail only: what could
be read still counts. Blocking: run ``scan`` in a worker thread.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MAX_PIDS = 5  # pids an item lists; the scan keeps them all for the decision
REREAD_LOOKS = 12  # a known process's command line is read again every this many looks (1 min at 5 s)
_TOKEN = re.compile(r"[A-Za-z0-9_.-]+")  # an ADW id is made of these, so it sits inside one token


@dataclass(frozen=True, slots=True)
class Scan:
    """What one look at the process table found."""

    pids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """ADW id -> the pids of its processes, ascending (ADWs with none are absent)."""
    seconds: float = 0.0
    """How long the look took."""
    processes: int = 0
    """Processes looked at."""
    error: str | None = None
    """Why the table could not be read at all (then ``pids`` is empty and means nothing)."""


class ProcessTable:
    """Find the processes of ADWs (see the module docstring).

    A process's command line is read when it is first seen and again every ``REREAD_LOOKS``
    looks (a command line changes only with an ``exec``); its working directory at every look.
    That keeps a look over a thousand processes near 10 ms instead of 40.
    """

    def __init__(self, agents_dir: Path, trees_dir: Path) -> None:
        # /proc gives working directories with symlinks resolved: compare with resolved roots.
        self._roots = tuple(os.path.realpath(d) + os.sep for d in (trees_dir, agents_dir))
        self._own = os.getpid()
        self._tokens: dict[psutil.Process, tuple[int, list[str]]] = {}  # process -> (look it was read, its tokens)
        self._looks = 0

    def scan(self, ids: Collection[str]) -> Scan:
        """Return the processes of each of ``ids`` (blocking)."""
        started = time.perf_counter()
        self._looks += 1
        wanted = set(ids)
        lengths = sorted({len(i) for i in wanted})
        found: dict[str, list[int]] = {}
        seen: dict[psutil.Process, tuple[int, list[str]]] = {}
        try:
            for process in psutil.process_iter():
                if process.pid == self._own:
                    continue
                tokens = self._command(process)
                seen[process] = tokens
                for adw_id in self._owners(process, tokens[1], wanted, lengths):
                    found.setdefault(adw_id, []).append(process.pid)
        except (OSError, psutil.Error) as exc:  # no /proc, or it cannot be listed
            return Scan(seconds=time.perf_counter() - started, error=f"cannot read the process table: {exc}")
        self._tokens = seen  # processes that ended are forgotten
        pids = {adw_id: tuple(sorted(p)) for adw_id, p in found.items()}
        return Scan(pids, time.perf_counter() - started, len(seen))

    def _command(self, process: psutil.Process) -> tuple[int, list[str]]:
        """Return (when read, the tokens of its command line), read again when it is new or due."""
        known = self._tokens.get(process)
        if known is not None and self._looks - known[0] < REREAD_LOOKS:
            return known
        try:
            line = " ".join(a for a in process.cmdline() if isinstance(a, str))
        except (psutil.Error, OSError):  # gone meanwhile, a zombie, or not ours to read
            line = ""
        return self._looks, _TOKEN.findall(line)

    def _owners(self, process: psutil.Process, tokens: list[str], wanted: set[str], lengths: list[int]) -> set[str]:
        """Return the ADWs one process belongs to (by its working directory and its command line)."""
        owners: set[str] = set()
        if not wanted:
            return owners
        try:
            cwd = process.cwd()
        except (psutil.Error, OSError):  # gone meanwhile, or another user's: its command line still counts
            cwd = ""
        for root in self._roots:
            if cwd.startswith(root):
                top = cwd[len(root) :].split(os.sep, 1)[0]
                if top in wanted:
                    owners.add(top)
        for token in tokens:
            if token in wanted:
                owners.add(token)
                continue
            for n in lengths:  # the id inside a longer token: "--adw-id=77c90e61", "77c90e61.log"
                if n >= len(token):
                    break
                for at in range(len(token) - n + 1):
                    if token[at : at + n] in wanted:
                        owners.add(token[at : at + n])
        return owners
