"""Idle: 1,000 ADWs, a database, 1,000 idle clients; the service's CPU over a quiet minute and memory per client.

The service runs as a process pinned to core 0 (when ``taskset`` exists) over a workspace of
``--adws`` ADW directories and a WAL database; the clients (raw sockets in this process, on core 1)
connect to every channel in turn and then only read. Nothing changes during the measurement.

Printed per run: the service's CPU over ``--seconds`` with 0 clients and with ``--clients``
clients (percent of one core), and its memory per client (RSS with clients minus RSS without,
divided by the count), right after connecting and at the end of the quiet period. The baseline in
the same invocation is a bare aiohttp server holding the same number of idle WebSocket clients.
Targets (issue 8): under 1% of a core, under 20 KB per idle client.

    .venv/bin/python bench/idle.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_seconds, rss_kb, stop
from common import pin as pin_to

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["/ws/adw-monitor", "/ws/workflows", "/ws/queue", "/ws/system-status", "/ws/workflow-history"]


def workspace(adws: int) -> Path:
    work = Path(tempfile.mkdtemp(prefix="idle-"))
    agents = work / "agents"
    for n in range(adws):
        d = agents / f"adw{n:05d}"
        d.mkdir(parents=True)
        (d / "adw_plan_iso").mkdir()
        body = {
            "adw_id": d.name,
            "issue_number": str(n),
            "status": ["running", "completed", "failed"][n % 3],
            "nl_input": "Idle bench " * 20,
            "start_time": "2026-11-26T10:00:00",
            "current_cost": 1.5,
        }
        (d / "adw_state.json").write_text(json.dumps(body, indent=2))
    (work / "trees").mkdir()
    with sqlite3.connect(work / "agents.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE phase_queue (queue_id TEXT PRIMARY KEY, parent_issue INTEGER, phase_number INTEGER)")
        db.execute("CREATE TABLE workflow_history (id INTEGER PRIMARY KEY, adw_id TEXT, status TEXT)")
        db.executemany("INSERT INTO phase_queue VALUES (?, ?, ?)", [(f"q{n}", n, 1) for n in range(100)])
    db.close()
    (work / "config.toml").write_text(
        "[server]\nport = 0\nmax_connections_per_ip = 100000\n"  # the clients all come from 127.0.0.1
        '[webhook]\nstatus_url = ""\n[database]\npath = "agents.db"\n'
        '[event_log]\npath = "events.db"\n'
    )
    return work


def bare_server() -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=20.0)
        await ws.prepare(request)
        await ws.send_str('{"type": "hello"}')
        async for _ in ws:
            pass
        return ws

    async def main() -> None:
        app = web.Application()
        for path in PATHS:
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def connect_idle(port: int, n: int) -> list[Any]:
    loop = asyncio.get_running_loop()
    transports = []

    class Idle(asyncio.Protocol):
        """Reads everything, keeps nothing, answers protocol pings (as browsers do)."""

        def __init__(self) -> None:
            self.buffer = b""
            self.upgraded = False
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            if not self.upgraded:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.upgraded, self.buffer = True, self.buffer[end + 4 :]
            while len(self.buffer) >= 2:
                opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
                if length == 126:
                    if len(self.buffer) < 4:
                        return
                    length, start = int.from_bytes(self.buffer[2:4], "big"), 4
                elif length == 127:
                    if len(self.buffer) < 10:
                        return
                    length, start = int.from_bytes(self.buffer[2:10], "big"), 10
                if len(self.buffer) < start + length:
                    return
                payload, self.buffer = self.buffer[start : start + length], self.buffer[start + length :]
                if opcode == 0x9:  # ping -> masked pong with the same payload
                    mask = os.urandom(4)
                    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)

    for i in range(n):
        transport, _ = await loop.create_connection(Idle, "127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {PATHS[i % len(PATHS)]} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        transports.append(transport)
    return transports


async def one_run(kind: str, adws: int, clients: int, seconds: float) -> dict[str, float]:
    work = workspace(adws)
    pin = pin_to(0)
    if kind == "service":
        command = [sys.executable, "-m", "broadcaster", "--config", str(work / "config.toml"), "--log-level", "warning"]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare"]
    proc = subprocess.Popen(
        [*pin, *command], cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True
    )
    transports: list[Any] = []
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
        await asyncio.sleep(3)  # start-up work (first reads, first commits) is not idle time
        before = cpu_seconds(proc.pid)
        await asyncio.sleep(seconds / 2)
        cpu_empty = (cpu_seconds(proc.pid) - before) / (seconds / 2) * 100
        rss_empty = rss_kb(proc.pid)
        transports = await connect_idle(port, clients)
        await asyncio.sleep(3)  # the snapshots go out
        rss_connected = rss_kb(proc.pid)
        before, started = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_clients = (cpu_seconds(proc.pid) - before) / (time.monotonic() - started) * 100
        rss_end = rss_kb(proc.pid)
        return {
            "cpu_empty": cpu_empty,
            "cpu_clients": cpu_clients,
            "kb_connected": (rss_connected - rss_empty) / clients,
            "kb_end": (rss_end - rss_empty) / clients,
        }
    finally:
        for transport in transports:
            transport.abort()
        stop(proc, work, timeout=10)


async def bench(adws: int, clients: int, seconds: float, runs: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    results: dict[str, list[dict[str, float]]] = {"service": [], "bare": []}
    for _ in range(runs):
        for kind in results:
            results[kind].append(await one_run(kind, adws, clients, seconds))
    print(f"{adws:,} ADWs, {clients:,} idle clients, {seconds:g} s quiet; min / median / max of {runs} runs")
    print("| server | CPU, 0 clients | CPU, clients | KB per client, connected | KB per client, after |")
    print("|---|---|---|---|---|")
    for kind, rows in results.items():
        cells = []
        for key, unit in (("cpu_empty", "%"), ("cpu_clients", "%"), ("kb_connected", ""), ("kb_end", "")):
            values = [r[key] for r in rows]
            cells.append(f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}{unit}")
        print(f"| {kind} | {' | '.join(cells)} |")


def main() -> None:
    if sys.argv[1:] == ["--serve-bare"]:
        bare_server()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adws", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(bench(args.adws, args.clients, args.seconds, args.runs))


if __name__ == "__main__":
    main()
