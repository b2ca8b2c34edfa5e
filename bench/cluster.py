"""The price of the bus: a state-file change on a node to a client of the cluster view.

    .venv/bin/python bench/cluster.py [--changes 300] [--size 1000] [--seconds 10]

Needs Debian's ``redis-server`` (``bash tests/system-packages.sh`` installs it); it runs on a
free loopback port in a temporary directory, nothing persisted.

Part 1, latency. Redis, one node publishing (``[backplane] url``) and one cluster view, both with
the throttle off so the figure is the path's, not the window's. One WebSocket client follows
``adw-state:x`` on the node and one on the view; every change (a rewrite of x's state file, 50 ms
apart) is timed from the write to each client's frame. The node's client is the baseline in the
same run: the same change on a single node. Printed: p50/p99 of each, the difference and the ratio
(target: the view's p50 within +10 ms of the node's).

Part 2, the view's CPU. Three nodes of ``--size`` ADWs each and the view: each process's CPU over
``--seconds`` idle, then over ``--seconds`` with a change every 100 ms (round-robin over the
nodes' ADWs), as percent of one core; a node's CPU under its share of the same changes is the
baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from common import cpu_seconds, free_port, launch, stop


async def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.from_url(url)
    async with asyncio.timeout(10):
        while True:
            try:
                await client.ping()
                break
            except (OSError, aioredis.ConnectionError):
                await asyncio.sleep(0.05)
    await client.aclose()
    return proc, url


def write_state(agents: Path, adw_id: str, n: int) -> None:
    directory = agents / adw_id
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        "adw_id": adw_id,
        "issue_number": str(n % 500 + 1),
        "status": ["running", "completed", "failed"][n % 3],
        "nl_input": "Cluster bench " * 10,
        "start_time": "2026-11-26T10:00:00",
        "current_cost": 1.5,
        "n": n,
    }
    tmp = directory / ".adw_state.json.tmp"
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, directory / "adw_state.json")


def node(root: Path, name: str, url: str, adws: int) -> Path:
    work = root / name
    (work / "agents").mkdir(parents=True)
    (work / "trees").mkdir()
    for n in range(adws):
        write_state(work / "agents", f"{name}-{n:04d}", n)
    (work / "config.toml").write_text(
        "[server]\nport = 0\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        "[adw]\nagents_dir = 'agents'\ntrees_dir = 'trees'\n[event_log]\npath = ''\n"
        f"[backplane]\nurl = '{url}'\nnode = '{name}'\n"
    )
    return work


def view(root: Path, url: str) -> Path:
    work = root / "view"
    work.mkdir(exist_ok=True)
    (work / "config.toml").write_text(
        "[server]\nport = 0\n[broadcast]\nmin_interval = 0\n[event_log]\npath = ''\n"
        f"[backplane]\nurl = '{url}'\nview = 'cluster'\n"
    )
    return work


async def next_with(ws: aiohttp.ClientWebSocketResponse, n: int) -> float:
    """Return when the frame carrying change ``n`` arrived."""
    while True:
        message = orjson.loads((await ws.receive(timeout=10)).data)
        if isinstance(message.get("data"), dict) and message["data"].get("n") == n:
            return time.perf_counter()


def line(name: str, ms: list[float]) -> float:
    ms = sorted(ms)
    p50, p99 = statistics.median(ms), ms[max(0, int(len(ms) * 0.99) - 1)]
    print(f"  {name:<34} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   max {ms[-1]:6.1f} ms   (n={len(ms)})")
    return p50


async def latency(root: Path, url: str, changes: int) -> None:
    print(f"latency: a state-file change to a client, {changes} changes")
    node_work = node(root, "solo", url, 1)
    node_proc, node_port = await launch(node_work)
    view_proc, view_port = await launch(view(root, url))
    channel = "adw-state/solo-0000"
    direct: list[float] = []
    through: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            a = await session.ws_connect(f"http://127.0.0.1:{node_port}/ws/{channel}")
            b = await session.ws_connect(f"http://127.0.0.1:{view_port}/ws/{channel}")
            for ws in (a, b):
                await next_with(ws, 0)  # the snapshot of the state written before the start
            for n in range(1, changes + 1):
                t0 = time.perf_counter()
                write_state(node_work / "agents", "solo-0000", n)
                at_node, at_view = await asyncio.gather(next_with(a, n), next_with(b, n))
                direct.append((at_node - t0) * 1000)
                through.append((at_view - t0) * 1000)
                await asyncio.sleep(0.05)
            await a.close()
            await b.close()
    finally:
        stop(view_proc, root / "view", keep=True)
        stop(node_proc, node_work, keep=True)
    base = line("single node (baseline)", direct)
    full = line("node -> Redis -> cluster view", through)
    print(f"  price of the bus p50: +{full - base:.1f} ms (ratio {full / base:.2f})")


async def cpu(root: Path, url: str, size: int, seconds: float) -> None:
    print(f"CPU: 3 nodes of {size} ADWs, the view; {seconds:g} s idle, then {seconds:g} s with a change every 100 ms")
    names = ["node-a", "node-b", "node-c"]
    works = {name: node(root, name, url, size) for name in names}
    procs: dict[str, Any] = {}
    try:
        for name in names:
            procs[name] = (await launch(works[name]))[0]
        view_proc, view_port = await launch(view(root, url))
        procs["view"] = view_proc
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 120
            while True:  # until the view shows every node's ADWs
                async with session.get(f"http://127.0.0.1:{view_port}/api/v1/adw-monitor") as response:
                    total = (await response.json())["summary"]["total"]
                if total == 3 * size or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            print(f"  the view shows {total} ADWs")
            ws = await session.ws_connect(f"http://127.0.0.1:{view_port}/ws/adw-state/node-c-{size - 1:04d}")
            await ws.receive(timeout=10)
            idle = await usage(procs, seconds, None)

            def change(k: int) -> None:
                name = names[k % 3]
                i = (k // 3) % size
                write_state(works[name] / "agents", f"{name}-{i:04d}", 100_000 + k)

            busy = await usage(procs, seconds, change)
            write_state(works["node-c"] / "agents", f"node-c-{size - 1:04d}", 999_999)
            await next_with(ws, 999_999)  # the view kept up: a change after the run reaches it
            await ws.close()
        for label, figures in (("idle", idle), ("a change every 100 ms", busy)):
            cells = "   ".join(f"{name} {pct:5.1f}%" for name, pct in figures.items())
            print(f"  {label:<22} {cells}")
        node_busy = statistics.mean(busy[n] for n in names)
        print(f"  view/node CPU under changes: {busy['view'] / node_busy:.2f}")
    finally:
        for name, proc in procs.items():
            stop(proc, works.get(name, root / "view"), keep=True)


async def usage(procs: dict[str, Any], seconds: float, change: Any) -> dict[str, float]:
    before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
    t0 = time.monotonic()
    k = 0
    while (elapsed := time.monotonic() - t0) < seconds:
        if change is not None:
            change(k)
            k += 1
        await asyncio.sleep(max(0.0, t0 + k * 0.1 - time.monotonic()) if change else seconds - elapsed)
    spent = time.monotonic() - t0
    return {name: (cpu_seconds(p.pid) - before[name]) / spent * 100 for name, p in procs.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cluster-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        redis_proc, url = await start_redis(root / "redis")
        try:
            await latency(root, url, args.changes)
            await aioredis.from_url(url).flushdb()  # part 2 starts from an empty bus
            await cpu(root, url, args.size, args.seconds)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
