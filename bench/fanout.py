"""Fan-out: one state-file change to N clients on one channel, against a bare server and the naive loop.

Three servers, each a separate process pinned to core 0 (when ``taskset`` exists), on the same
event loop (uvloop where it is installed, as the service), all triggered the same way
(watchfiles sees the state file change, the server reads it):

- ``service``: ``adw-broadcaster`` itself, clients on ``/ws/adw-state/a1``;
- ``bare``: aiohttp that builds one frame and writes the same bytes to every socket's transport
  (the floor: nothing per client but a write);
- ``naive``: aiohttp doing ``await ws.send_json(msg)`` for each client in a loop.

The client swarm runs in this process on core 1: raw asyncio sockets (no aiohttp client per
connection), each scanning what arrives for the change's marker. Per change it records the time
from the file write to the first and to the last client seeing it, and the server's CPU time
(every thread's schedstat, in nanoseconds) spent on it. Each run is the median of ``--changes`` changes; the
table shows min / median / max over ``--runs`` runs (after one untimed warm-up run per size), then
the service's ratios against ``bare``
(target within 1.2x) and ``naive`` (target 2x better at 5,000).

    .venv/bin/python bench/fanout.py --clients 1000 5000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_seconds, stop
from common import pin as pin_to

ROOT = Path(__file__).resolve().parents[1]
STATE_SIZE = 1650  # bytes of JSON in the message, as measured on main


def state(step: int) -> dict[str, Any]:
    body = {"adw_id": "a1", "issue_number": "42", "status": "running", "step": step, "pad": ""}
    body["pad"] = "p" * (STATE_SIZE - len(json.dumps(body)))
    return body


def write_state(agents: Path, step: int) -> None:
    path = agents / "a1" / "adw_state.json"
    tmp = path.with_name(".tmp")
    tmp.write_text(json.dumps(state(step)))
    os.replace(tmp, path)


# --- the two comparison servers (run as: fanout.py --serve bare|naive AGENTS_DIR) -------------


def serve(mode: str, agents: Path) -> None:
    from aiohttp import web
    from watchfiles import awatch

    sockets: list[tuple[web.WebSocketResponse, Any]] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        sockets.append((ws, request.transport))
        try:
            async for _ in ws:
                pass
        finally:
            sockets.remove((ws, request.transport))
        return ws

    async def watch(app: web.Application) -> Any:
        async def follow() -> None:
            path = agents / "a1" / "adw_state.json"
            async for _ in awatch(agents, debounce=100, step=20):
                message = {"type": "adw_state_update", "data": json.loads(path.read_bytes()), "seq": 1}
                if mode == "bare":
                    payload = json.dumps(message).encode()
                    n = len(payload)
                    if n < 126:
                        header = bytes([0x81, n])
                    elif n < 65536:
                        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
                    else:
                        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
                    frame = header + payload
                    for _, transport in sockets:
                        transport.write(frame)
                else:
                    for ws, _ in list(sockets):
                        await ws.send_json(message)

        task = asyncio.create_task(follow())
        yield
        task.cancel()

    app = web.Application()
    app.router.add_get("/ws/adw-state/a1", handler)
    app.cleanup_ctx.append(watch)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    try:  # the loop the service runs on (uvloop where installed), so the ratio measures our code, not the loop
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


# --- the swarm --------------------------------------------------------------------------------


class Swarm:
    """N raw WebSocket connections; each notes when it first sees the current marker."""

    def __init__(self) -> None:
        self.marker = b""
        self.arrivals: list[float] = []
        self.connected = 0
        self.transports: list[asyncio.Transport] = []

    def protocol(self) -> asyncio.Protocol:
        swarm = self

        class Conn(asyncio.Protocol):
            def __init__(self) -> None:
                self.seen = b""
                self.tail = b""
                self.upgraded = False

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                swarm.transports.append(transport)  # type: ignore[arg-type]

            def data_received(self, data: bytes) -> None:
                if not self.upgraded and b"101 Switching" in data:
                    self.upgraded = True
                    swarm.connected += 1
                window = self.tail + data
                if swarm.marker and self.seen != swarm.marker and swarm.marker in window:
                    self.seen = swarm.marker
                    swarm.arrivals.append(time.monotonic())
                self.tail = data[-64:]

        return Conn()


async def connect(swarm: Swarm, port: int, n: int) -> None:
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/adw-state/a1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    for start in range(0, n, 200):
        batch = await asyncio.gather(
            *(loop.create_connection(swarm.protocol, "127.0.0.1", port) for _ in range(min(200, n - start)))
        )
        for transport, _ in batch:
            transport.write(request)
    deadline = time.monotonic() + 60
    while swarm.connected < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {swarm.connected} of {n} connected")
        await asyncio.sleep(0.05)


async def one_run(kind: str, n: int, changes: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    agents = work / "agents"
    (agents / "a1").mkdir(parents=True)
    (work / "trees").mkdir()
    write_state(agents, 0)
    pin = pin_to(0)
    if kind == "service":
        (work / "config.toml").write_text(
            # every client of the swarm comes from 127.0.0.1: lift the per-address limit (1,000)
            "[server]\nport = 0\nheartbeat_interval = 60\nping_interval = 0\nmax_connections_per_ip = 100000\n"
            "[broadcast]\nmin_interval = 0\n"
            '[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        )
        command = [sys.executable, "-m", "broadcaster", "--config", str(work / "config.toml"), "--log-level", "warning"]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, str(agents)]
    proc = subprocess.Popen(
        [*pin, *command], cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True
    )
    swarm = Swarm()
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
        await connect(swarm, port, n)
        await asyncio.sleep(1.0)  # let the connection burst settle before measuring
        # The swarm's own garbage collector stays off while measuring: a collection over its
        # thousands of connections would pause the readers in the middle of a change.
        gc.collect()
        gc.disable()
        firsts, lasts, cpus = [], [], []
        for step in range(1, changes + 1):
            swarm.marker = f'"step":{step}'.encode() if kind == "service" else f'"step": {step}'.encode()
            swarm.arrivals = []
            cpu_before = cpu_seconds(proc.pid)
            written = time.monotonic()
            write_state(agents, step)
            deadline = written + 30
            while len(swarm.arrivals) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            if len(swarm.arrivals) < n:
                raise RuntimeError(f"{kind}: only {len(swarm.arrivals)} of {n} clients saw change {step}")
            await asyncio.sleep(0.3)  # the server's bookkeeping after the last write counts too
            cpus.append(cpu_seconds(proc.pid) - cpu_before)
            firsts.append(min(swarm.arrivals) - written)
            lasts.append(max(swarm.arrivals) - written)
            # A random pause: the next write lands at a random point of the watcher's 20 ms step
            # (a fixed one lands every write at the same point, and servers whose watcher restarts
            # its step at different moments would differ by up to a step for no reason of theirs).
            await asyncio.sleep(random.uniform(0.4, 0.6))
        return {
            "first": statistics.median(firsts) * 1000,
            "last": statistics.median(lasts) * 1000,
            "cpu": statistics.median(cpus) * 1000,
        }
    finally:
        gc.enable()
        for transport in swarm.transports:
            transport.abort()
        stop(proc, work, timeout=10)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a (below the clock tick)"


def spread(values: list[float]) -> str:
    return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"


async def bench(clients: list[int], runs: int, changes: int, kinds: list[str]) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})  # the swarm on the other core
    print("| N | server | first client ms | last client ms | server CPU per change ms |")
    print("|---|---|---|---|---|")
    for n in clients:
        results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        # Untimed: the first run at a size was always ~2x slower to reach the last client,
        # whichever server it was (the swarm's side, first holding that many sockets).
        await one_run(kinds[0], n, 3)
        for _ in range(runs):
            for kind in kinds:  # interleaved, so drift on the machine hits every server alike
                results[kind].append(await one_run(kind, n, changes))
        for kind in kinds:
            r = results[kind]
            row = " | ".join(spread([x[key] for x in r]) for key in ("first", "last", "cpu"))
            print(f"| {n:,} | {kind} | {row} |", flush=True)
        med = {kind: {k: statistics.median(x[k] for x in results[kind]) for k in ("last", "cpu")} for kind in kinds}
        for base in [k for k in kinds if k != "service"]:
            if "service" in med:
                print(
                    f"| {n:,} | service / {base} | | last {ratio(med['service']['last'], med[base]['last'])} |"
                    f" cpu {ratio(med['service']['cpu'], med[base]['cpu'])} |",
                    flush=True,
                )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=9)
    parser.add_argument("--servers", nargs="+", default=["service", "bare", "naive"])
    args = parser.parse_args()
    asyncio.run(bench(args.clients, args.runs, args.changes, args.servers))


if __name__ == "__main__":
    main()
