"""Reading one ADW directory: confined, bounded and never blocking.

Every file is opened relative to the directory above it with ``O_NOFOLLOW | O_NONBLOCK`` and
checked with ``fstat``, so a symlink is never followed out of ``agents_dir``, a FIFO or device
never blocks or floods the reader, and a state file larger than ``max_state_bytes`` is reported,
not read. Parsed states pass through a ``Cleaner`` (encodable values, credentials redacted)
before anyone else sees them. Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .values import Cleaner

PHASES = ("plan", "build", "test", "review", "document", "ship")
STATE_FILE = "adw_state.json"
ERROR_LOG = "error.log"
_PHASE_DIRS = {f"adw_{phase}_iso": phase for phase in PHASES}
ADW_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ERROR_LOG_TAIL = 4096  # bytes of error.log read to find its last line
MAX_STATE_BYTES = 1024 * 1024
MAX_WALKED = 10_000  # files of one phase directory looked at for the activity at start-up
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class AdwRecord:
    """What is known of one ADW directory."""

    adw_id: str
    state: Mapping[str, Any] | None
    """The last state that parsed; None while there is no state file."""
    phases: tuple[str, ...] = ()
    """Phases whose ``adw_{phase}_iso`` directory exists, in PHASES order."""
    error_log: str | None = None
    """The last non-empty line of ``error.log``, if there is one."""
    error: str | None = None
    """Why the newest read of the state file failed; None when it parsed."""
    activity: int | None = None
    """The newest modification time (epoch seconds) of the state file, ``error.log``, the phase
    directories and (read at start-up, then from the watcher's events) the files in them."""
    pids: tuple[int, ...] = ()
    """Its processes as the last look at the process table saw them (``processes``)."""
    quiet: bool = False
    """No activity within ``[adw] stall_after`` as of the last judgement (only while scanning)."""


def list_dirs(path: Path) -> frozenset[str]:
    """Return the names of the directories in ``path`` (none if it does not exist); raise OSError else."""
    try:
        with os.scandir(path) as it:
            return frozenset(entry.name for entry in it if entry.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def list_entries(agents_dir: Path) -> frozenset[str]:
    """Return the ADW directories of ``agents_dir``, and its symlinks (read, then reported as not followed)."""
    try:
        with os.scandir(agents_dir) as it:
            return frozenset(e.name for e in it if e.is_dir(follow_symlinks=False) or e.is_symlink())
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def read_dirs(
    agents_dir: Path, ids: Iterable[str], max_bytes: int, cleaner: Cleaner, *, walk: bool = False
) -> dict[str, AdwRecord | None]:
    """Read each ADW directory under ``agents_dir`` (blocking: run it in a worker thread); None where none is.

    ``walk``: also look at the files inside the phase directories for the activity (at start-up;
    later their changes come from the watcher).
    """
    try:
        root = os.open(agents_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return {adw_id: None for adw_id in ids}
    try:
        return {adw_id: _read_dir(root, adw_id, max_bytes, cleaner, walk) for adw_id in ids}
    finally:
        os.close(root)


def newest_mtime(paths: Iterable[str]) -> int | None:
    """Return the newest modification time of ``paths`` (symlinks not followed; gone ones skipped)."""
    newest = None
    for path in paths:
        try:
            mtime = int(os.stat(path, follow_symlinks=False).st_mtime)
        except (OSError, ValueError):
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest


def is_phase_dir(name: str) -> bool:
    """Return whether ``name`` is a phase directory's name (``adw_plan_iso``)."""
    return name in _PHASE_DIRS


def _activity(fd: int, listing: list[os.DirEntry[str]], walk: bool) -> int | None:
    """Return the newest mtime of the files that show an ADW at work (see ``AdwRecord.activity``)."""
    newest: float | None = None
    for entry in listing:
        if entry.name in (STATE_FILE, ERROR_LOG) or entry.name in _PHASE_DIRS:
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            newest = mtime if newest is None else max(newest, mtime)
            if walk and entry.name in _PHASE_DIRS and entry.is_dir(follow_symlinks=False):
                inside = _newest_inside(fd, entry.name)
                if inside is not None:
                    newest = max(newest, inside)
    return None if newest is None else int(newest)


def _newest_inside(fd: int, name: str) -> float | None:
    try:
        sub = os.open(name, _OPEN_DIR, dir_fd=fd)
    except OSError:
        return None
    newest = None
    try:
        with os.scandir(sub) as it:
            for i, entry in enumerate(it):
                if i >= MAX_WALKED:
                    break
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                newest = mtime if newest is None else max(newest, mtime)
    except OSError:
        pass
    finally:
        os.close(sub)
    return newest


def _read_dir(root: int, adw_id: str, max_bytes: int, cleaner: Cleaner, walk: bool = False) -> AdwRecord | None:
    try:
        fd = os.open(adw_id, _OPEN_DIR, dir_fd=root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(root, adw_id):
            return AdwRecord(adw_id, None, error="a symbolic link, not followed (ADW directories must be real)")
        if exc.errno == errno.ENOTDIR:
            return None  # a plain file such as port_allocations.json
        return AdwRecord(adw_id, None, error=f"cannot open directory: {exc.strerror}")
    try:
        with os.scandir(fd) as it:
            listing = list(it)
        entries = {entry.name: entry.is_dir(follow_symlinks=False) for entry in listing}
        phases = tuple(phase for name, phase in _PHASE_DIRS.items() if entries.get(name))
        error_log = _last_line(fd) if entries.get(ERROR_LOG) is False else None
        activity = _activity(fd, listing, walk)
        if STATE_FILE not in entries:
            return AdwRecord(adw_id, None, phases, error_log, activity=activity)
        state, error = _read_state(fd, max_bytes, cleaner)
        return AdwRecord(adw_id, state, phases, error_log, error, activity=activity)
    except OSError as exc:  # out of descriptors, an I/O error: this ADW only, retried later
        return AdwRecord(adw_id, None, error=f"cannot read directory: {exc.strerror or exc}")
    finally:
        os.close(fd)


def _is_link(directory: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_regular(directory: int, name: str) -> tuple[int | None, str | None, int]:
    """Open ``name`` in ``directory`` if it is a regular file; return (fd, why not, size)."""
    try:
        fd = os.open(name, _OPEN_FILE, dir_fd=directory)
    except FileNotFoundError:
        return None, None, 0
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "a symbolic link, not followed", 0
        return None, f"cannot open: {exc.strerror}", 0
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return None, f"cannot stat: {exc.strerror}", 0
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None, f"not a regular file ({_kind(st.st_mode)}), not read", 0
    return fd, None, st.st_size


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "special"


def _read_state(directory: int, max_bytes: int, cleaner: Cleaner) -> tuple[dict[str, Any] | None, str | None]:
    fd, why, size = _open_regular(directory, STATE_FILE)
    if fd is None:
        return None, why
    try:
        if size > max_bytes:
            return None, f"{size} bytes, more than [adw] max_state_bytes ({max_bytes}), not read"
        raw = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    finally:
        os.close(fd)
    if len(raw) > max_bytes:  # grew between fstat and read
        return None, f"more than [adw] max_state_bytes ({max_bytes}), not read"
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON ({len(raw)} bytes): {exc}"
    if not isinstance(state, dict):
        return None, f"expected a JSON object, got {type(state).__name__}"
    return cleaner.clean(state), None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(65536, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _last_line(directory: int) -> str | None:
    fd, _, size = _open_regular(directory, ERROR_LOG)
    if fd is None:
        return None
    try:
        tail = os.pread(fd, _ERROR_LOG_TAIL, max(0, size - _ERROR_LOG_TAIL)).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
