"""Scale: one ADW's state-file change with 10, 1,000 and 10,000 ADW directories.

For each size, a workspace of realistic state files (1-3 KB each) is laid out, and the service
runs as a process pinned to core 0 (when ``taskset`` exists) with one client in this process on
``adw-monitor`` (the biggest channel, every ADW in each message) or, with ``--watch adw-state``,
on the changed ADW's own channel. Printed per size, min / median / max of ``--runs`` runs:

- start-up: from launch to the listening banner (every state file read), and RSS then;
- change -> client p50: a write to one random ADW's state file until the message showing it
  arrives; the baseline is raw watchfiles noticing the same kind of write in the same run (writes
  land at random points of the watcher's step, see ``pause``);
- server CPU per change (schedstat of every thread);
- event-log bytes per change (the data the log stored for the changes' events).

Targets (issue 8): latency, CPU and log growth each within 1.5x between 10 and 10,000 ADWs;
p50 within 1.2x of raw watchfiles at 1,000.

    .venv/bin/python bench/scale.py --sizes 10 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import cpu_seconds, launch, rss_kb, stop
from common import pin as pin_to
from watchfiles import awatch


def state(adw_id: str, n: int, cost: float, rng: random.Random) -> dict[str, Any]:
    return {
        "adw_id": adw_id,
        "issue_number": str(n),
        "branch_name": f"feature-{n}-{adw_id}",
        "plan_file": f"specs/issue-{n}-adw-{adw_id}.md",
        "issue_class": "/feature",
        "worktree_path": f"/work/trees/{adw_id}",
        "backend_port": 9100 + n % 100,
        "frontend_port": 9200 + n % 100,
        "model_set": "base",
        "all_adws": ["adw_plan_iso", "adw_build_iso"],
        "estimated_cost_total": 4.2,
        "workflow_template": "adw_sdlc_iso",
        "model_used": "claude-sonnet-4-5",
        "start_time": f"2026-11-{1 + n % 28:02d}T10:{n % 60:02d}:00",
        "nl_input": "Implement the thing " * rng.randint(5, 60),
        "github_url": f"https://github.com/acme/shop/issues/{n}",
        "status": rng.choice(["running", "completed", "failed"]),
        "current_phase": "build",
        "current_cost": cost,
    }


def write(agents: Path, adw_id: str, body: dict[str, Any]) -> None:
    path = agents / adw_id / "adw_state.json"
    tmp = path.with_name(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, path)


def layout(size: int, rng: random.Random) -> tuple[Path, dict[str, dict[str, Any]]]:
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    agents = work / "agents"
    states = {}
    for n in range(size):
        adw_id = f"{n:08x}"
        (agents / adw_id / "adw_plan_iso").mkdir(parents=True)
        states[adw_id] = state(adw_id, n, 0.0, rng)
        write(agents, adw_id, states[adw_id])
    (work / "trees").mkdir()
    (work / "config.toml").write_text(
        '[server]\nport = 0\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n'
        '[event_log]\npath = "events.db"\n'
    )
    return work, states


def pause(rng: random.Random) -> float:
    """Return a pause between changes that puts the next write at a random point of the watcher's step.

    watchfiles looks for changes every ``step`` ms and reports after a quiet step, so a write's
    latency is 1-2 steps depending on where in the step it lands; a fixed pause would land every
    write at the same point and measure that point, not the service.
    """
    return rng.uniform(0.4, 0.6)


def stored_bytes(path: Path, since: float) -> int:
    """Return the bytes of event data the log stored for events detected since ``since`` (epoch s)."""
    with sqlite3.connect(path) as db:
        [(total,)] = db.execute("SELECT COALESCE(SUM(length(data)), 0) FROM events WHERE timestamp >= ?", (since,))
    db.close()
    return int(total)


async def watchfiles_baseline(agents: Path, states: dict[str, dict[str, Any]], rng: random.Random, n: int) -> float:
    """Median time from a write to raw watchfiles (debounce 100 ms, step 20 ms, as the service) reporting it."""
    seen: asyncio.Queue[set[str]] = asyncio.Queue()
    stop = asyncio.Event()

    async def watch() -> None:
        async for changes in awatch(agents, debounce=100, step=20, stop_event=stop):
            seen.put_nowait({path for _, path in changes})

    task = asyncio.create_task(watch())
    ready = agents / ".ready"
    async with asyncio.timeout(120):  # installing a watch on every directory takes a while at 10,000
        while True:
            ready.write_text(str(time.monotonic()))
            try:
                if any(str(ready) in paths for paths in [await asyncio.wait_for(seen.get(), 1.0)]):
                    break
            except TimeoutError:
                continue
    while not seen.empty():
        seen.get_nowait()
    times = []
    ids = list(states)
    for _ in range(n):
        adw_id = rng.choice(ids)
        written = time.monotonic()
        write(agents, adw_id, {**states[adw_id], "touch": written})
        async with asyncio.timeout(10):
            while not any(adw_id in path for path in await seen.get()):
                pass
        times.append(time.monotonic() - written)
        await asyncio.sleep(pause(rng))
    stop.set()
    await task
    ready.unlink()
    return statistics.median(times) * 1000


async def one_run(size: int, changes: int, rng: random.Random, watch: str) -> dict[str, float]:
    work, states = layout(size, rng)
    pin = pin_to(0)
    launched = time.monotonic()
    proc, port = await launch(work, prefix=pin)
    try:
        startup = time.monotonic() - launched
        memory = rss_kb(proc.pid) / 1024
        baseline = await watchfiles_baseline(work / "agents", states, rng, changes)
        latencies, cpus = [], []
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws/adw-monitor", max_msg_size=0)
            await ws.receive(timeout=60)
            await asyncio.sleep(2.0)  # the first commits of the log are not a change's growth
            changes_from = time.time()
            ids = list(states)
            for step in range(1, changes + 1):
                adw_id = rng.choice(ids)
                cost = round(step * 0.37, 2)
                marker = f'"adw_id":"{adw_id}"'.encode()
                if watch == "adw-state":  # the changed ADW's own channel: the monitor is built, not sent
                    await ws.close()
                    ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws/adw-state/{adw_id}")
                    await ws.receive(timeout=30)
                cpu_before = cpu_seconds(proc.pid)
                written = time.monotonic()
                write(work / "agents", adw_id, {**states[adw_id], "current_cost": cost})
                while True:
                    msg = await ws.receive(timeout=30)
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"unexpected {msg.type}")
                    raw = msg.data.encode() if isinstance(msg.data, str) else msg.data
                    at = raw.find(marker)
                    if at >= 0 and f'"current_cost":{cost}'.encode() in raw[at : at + 4000]:
                        break
                latencies.append(time.monotonic() - written)
                await asyncio.sleep(0.3)
                cpus.append(cpu_seconds(proc.pid) - cpu_before)
                await asyncio.sleep(pause(rng) - 0.3)
            await ws.close()
        stop(proc, work, timeout=20, keep=True)  # a clean stop commits the last batch
        growth = stored_bytes(work / "events.db", changes_from) / changes
        return {
            "startup": startup,
            "rss": memory,
            "p50": statistics.median(latencies) * 1000,
            "baseline": baseline,
            "cpu": statistics.median(cpus) * 1000,
            "log": growth / 1024,
        }
    finally:
        stop(proc, work, timeout=20)


def spread(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


async def bench(sizes: list[int], runs: int, changes: int, watch: str) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    rng = random.Random(7)
    print(
        "| ADW dirs | start-up s | RSS MB | change -> client p50 ms | raw watchfiles p50 ms | CPU per change ms |"
        " event log KB per change |"
    )
    print("|---|---|---|---|---|---|---|")
    medians: dict[int, dict[str, float]] = {}
    for size in sizes:
        rows = [await one_run(size, changes, rng, watch) for _ in range(runs)]
        medians[size] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"| {size:,} | {spread([r['startup'] for r in rows], 1)} | {spread([r['rss'] for r in rows])} |"
            f" {spread([r['p50'] for r in rows])} | {spread([r['baseline'] for r in rows])} |"
            f" {spread([r['cpu'] for r in rows], 1)} | {spread([r['log'] for r in rows], 1)} |",
            flush=True,
        )
    small, large = min(sizes), max(sizes)
    for key, name in (("p50", "latency"), ("cpu", "CPU"), ("log", "log growth")):
        print(f"{name}: {large:,} vs {small:,} ADWs: {medians[large][key] / max(medians[small][key], 1e-9):.2f}x")
    for size in sizes:
        print(f"p50 vs raw watchfiles at {size:,}: {medians[size]['p50'] / medians[size]['baseline']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=15)
    parser.add_argument(
        "--watch",
        choices=["adw-monitor", "adw-state"],
        default="adw-monitor",
        help="the client's channel: the whole monitor list per change, or the changed ADW's own state",
    )
    args = parser.parse_args()
    asyncio.run(bench(args.sizes, args.runs, args.changes, args.watch))


if __name__ == "__main__":
    main()
