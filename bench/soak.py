"""Soak: the real service under churn for a bounded time; memory, descriptors and threads at start and end.

Runs ``adw-broadcaster`` as a child process on 127.0.0.1 over a temporary workspace, and for
``--duration`` seconds keeps it busy the way a long day does, all at once:

- client churn: WebSocket clients connect to random channels, read a little, leave;
- a set of long-lived clients on every channel;
- file churn: state files rewritten (in place and by rename), ADW directories created and removed;
- database commits: phase-queue updates and new workflow-history rows from another connection;
- a stalled client: a raw socket that completes the handshake and never reads (made again when dropped).

It prints the service's RSS, open descriptors and threads after a warm-up (the baseline) and at
every report, then the end/start ratios. Memory that keeps growing, descriptors that pile up or
threads that multiply show as ratios well above 1.

    .venv/bin/python bench/soak.py --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from common import launch
from common import stop as stop_process

CHANNELS = ["workflows", "routes", "workflow-history", "adw-monitor", "queue", "system-status", "webhook-status"]
UPGRADE = (
    "GET /ws/adw-state/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def proc_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return {"rss_kb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


def state(adw_id: str, issue: int, step: int) -> dict[str, object]:
    return {
        "adw_id": adw_id,
        "issue_number": str(issue),
        "status": random.choice(["running", "running", "completed", "failed"]),
        "current_phase": random.choice(["plan", "build", "test", "review"]),
        "current_cost": round(step * 0.01, 2),
        "nl_input": "Soak " * 40,
        "start_time": "2026-11-26T10:00:00",
        "step": step,
    }


def write_state(agents: Path, adw_id: str, body: dict[str, object]) -> None:
    path = agents / adw_id / "adw_state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(body, indent=2)
    if random.random() < 0.5:
        tmp = path.with_name(".adw_state.tmp")
        tmp.write_text(raw)
        os.replace(tmp, path)
    else:
        path.write_text(raw)


def make_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE phase_queue (queue_id TEXT PRIMARY KEY, parent_issue INTEGER, phase_number INTEGER,"
            " issue_number INTEGER, status TEXT, phase_data TEXT, adw_id TEXT, priority INTEGER DEFAULT 50)"
        )
        db.execute("CREATE TABLE queue_config (config_key TEXT PRIMARY KEY, config_value TEXT, updated_at TEXT)")
        db.execute(
            "CREATE TABLE workflow_history (id INTEGER PRIMARY KEY AUTOINCREMENT, adw_id TEXT UNIQUE,"
            " status TEXT, model_used TEXT, actual_cost_total REAL, duration_seconds INTEGER,"
            " created_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        for n in range(30):
            db.execute(
                "INSERT INTO phase_queue VALUES (?, ?, ?, ?, 'queued', ?, NULL, 50)",
                (f"q{n}", n // 3, n % 3, n, json.dumps({"title": f"Phase {n}"})),
            )
    db.close()


async def churn_files(agents: Path, stop: float, counts: dict[str, int]) -> None:
    step = 0
    while time.monotonic() < stop:
        step += 1
        adw_id = f"adw{random.randrange(60):03d}"
        write_state(agents, adw_id, state(adw_id, 100 + int(adw_id[3:]), step))
        counts["writes"] += 1
        if step % 200 == 0:  # an ADW goes away, another comes
            gone = agents / f"adw{random.randrange(60):03d}"
            shutil.rmtree(gone, ignore_errors=True)
        await asyncio.sleep(0.05)


async def churn_db(db_path: Path, stop: float, counts: dict[str, int]) -> None:
    n = 0
    while time.monotonic() < stop:
        n += 1

        def commit(n: int = n) -> None:
            with sqlite3.connect(db_path) as db:
                db.execute(
                    "UPDATE phase_queue SET status = ? WHERE queue_id = ?",
                    (random.choice(["queued", "ready", "running", "completed"]), f"q{random.randrange(30)}"),
                )
                if n % 10 == 0:
                    db.execute(
                        "INSERT OR REPLACE INTO workflow_history (adw_id, status, model_used, actual_cost_total,"
                        " duration_seconds) VALUES (?, ?, 'm', ?, ?)",
                        (f"h{n % 500}", random.choice(["completed", "failed"]), random.random() * 5, n),
                    )
            db.close()

        await asyncio.to_thread(commit)
        counts["commits"] += 1
        await asyncio.sleep(0.2)


async def churn_clients(base: str, stop: float, counts: dict[str, int]) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < stop:
            path = random.choice([*(f"/ws/{c}" for c in CHANNELS), f"/ws/adw-state/adw{random.randrange(60):03d}"])
            try:
                async with session.ws_connect(base + path, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                    await ws.receive(timeout=5)
                    counts["connects"] += 1
            except (aiohttp.ClientError, TimeoutError):
                counts["connect_errors"] += 1
            await asyncio.sleep(0.02)


async def long_lived(base: str, stop: float, counts: dict[str, int]) -> None:
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{base}/ws/{c}") for c in CHANNELS for _ in range(3)]

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            while time.monotonic() < stop:
                try:
                    msg = await ws.receive(timeout=max(0.1, stop - time.monotonic()))
                except TimeoutError:
                    return
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return
                counts["messages"] += 1

        try:
            async with asyncio.timeout(max(0.1, stop - time.monotonic()) + 2):
                await asyncio.gather(*(read(ws) for ws in sockets))
        except TimeoutError:
            pass
        for ws in sockets:
            await ws.close()


async def stalled_client(port: int, stop: float, counts: dict[str, int]) -> None:
    sock: socket.socket | None = None
    while time.monotonic() < stop:
        if sock is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(UPGRADE.format(id="adw001").encode())
            sock.setblocking(False)
            counts["stalled"] += 1
        # tcpi_state, the first byte of TCP_INFO: 1 is ESTABLISHED. Reading would un-stall it.
        if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 1:
            sock.close()
            sock = None  # dropped by the service (no answer to its pings): stall again
        await asyncio.sleep(1.0)
    if sock is not None:
        sock.close()


async def soak(duration: float, report_every: float) -> int:
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    agents, trees = work / "agents", work / "trees"
    agents.mkdir()
    trees.mkdir()
    for n in range(60):
        write_state(agents, f"adw{n:03d}", state(f"adw{n:03d}", 100 + n, 0))
    make_db(work / "agents.db")
    (work / "config.toml").write_text(
        "[server]\nport = 0\nwrite_timeout = 3.0\nping_interval = 5.0\n[broadcast]\nmin_interval = 0.2\n"
        '[webhook]\nstatus_url = ""\n[database]\npath = "agents.db"\n[event_log]\npath = "events.db"\n'
    )
    proc, port = await launch(work, stderr=subprocess.DEVNULL, timeout=30)
    try:
        base = f"http://127.0.0.1:{port}"
        counts = dict.fromkeys(["writes", "commits", "connects", "connect_errors", "messages", "stalled"], 0)
        warmup = min(30.0, duration / 10)
        stop = time.monotonic() + warmup + duration
        tasks = [
            asyncio.create_task(churn_files(agents, stop, counts)),
            asyncio.create_task(churn_db(work / "agents.db", stop, counts)),
            asyncio.create_task(churn_clients(base, stop, counts)),
            asyncio.create_task(long_lived(base, stop, counts)),
            asyncio.create_task(stalled_client(port, stop, counts)),
        ]
        await asyncio.sleep(warmup)
        start = proc_figures(proc.pid)
        print(f"baseline after {warmup:g}s warm-up: {start}", flush=True)
        began = time.monotonic()
        while time.monotonic() < stop:
            await asyncio.sleep(min(report_every, max(0.0, stop - time.monotonic())))
            print(f"t={time.monotonic() - began:5.0f}s {proc_figures(proc.pid)} {counts}", flush=True)
        end = proc_figures(proc.pid)
        _, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        print(f"end: {end}")
        for key in ("rss_kb", "fds", "threads"):
            print(f"{key}: start {start[key]} end {end[key]} ratio {end[key] / start[key]:.2f}")
        print(f"work done: {counts}")
        return 0 if proc.poll() is None else 1
    finally:
        stop_process(proc, work, timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of soak after the warm-up (default 600)")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between reports (default 60)")
    args = parser.parse_args()
    return asyncio.run(soak(args.duration, args.report_every))


if __name__ == "__main__":
    sys.exit(main())
