"""What the bench scripts share: reading a process's CPU and memory, and stopping it."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """Return the CPU time of every thread of ``pid`` (schedstat: nanoseconds, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def rss_kb(pid: int) -> int:
    """Return the resident memory of ``pid`` in KiB."""
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))  # type: ignore[union-attr]


def free_port() -> int:
    """Return a loopback port that was free a moment ago (for a server that cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin(core: int) -> list[str]:
    """Return the command prefix that pins a child to ``core`` (nothing without taskset)."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def stop(proc: subprocess.Popen[str], work: Path, *, timeout: float = 10.0, keep: bool = False) -> None:
    """Terminate ``proc`` (kill it if it lingers), close its pipe and remove its workspace (unless ``keep``)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    if proc.stdout is not None:
        proc.stdout.close()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


async def launch(
    work: Path, *, prefix: list[str] | None = None, stderr: int | None = None, timeout: float = 300
) -> tuple[subprocess.Popen[str], int]:
    """Start the service on ``work/config.toml`` (cwd ``work``); return it and its port once it listens."""
    proc = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "broadcaster", "--config", str(work / "config.toml")]
        + ["--log-level", "warning"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    match = re.search(r"127\.0\.0\.1:(\d+)", banner)
    if match is None:
        proc.kill()
        raise RuntimeError(f"the service did not start: {banner!r}")
    return proc, int(match.group(1))


def run_sized(doc: str, bench: Callable[[int, int, int], Awaitable[None]], *, changes: int) -> None:
    """Parse ``--size --changes --seed`` (``doc`` as the help) and run ``bench(size, changes, seed)``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=changes)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(bench(args.size, args.changes, args.seed))
