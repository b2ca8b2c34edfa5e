"""Does the durable event log slow broadcasts? SQLite store against the in-memory store, same run.

    python bench/eventlog.py [--updates 3000] [--rounds 3] [--rate 200]

For each store: (1) the cost of one ``pipeline.update`` (digest, event, append to the log,
throttle, encode, hand to the hub), and (2) the latency from ``update`` to a WebSocket client
on 127.0.0.1 receiving the frame, with the SQLite store's flusher committing in the background.
Rounds alternate between the stores so machine noise hits both alike; the ratio is the result.
Updates are paced at ``--rate`` per second (real agents produce a few per second; 0 = as fast
as possible, a stress case where the flusher's commits compete with the event loop for the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broadcaster import create_app, load_config
from broadcaster.core.sqlite_store import SqliteEventStore
from broadcaster.web.keys import EVENT_LOG, PIPELINE


def state(n: int) -> dict[str, object]:
    return {
        "adw_id": "bench",
        "issue_number": str(n),
        "branch_name": f"feature-{n}",
        "current_phase": "build",
        "estimated_cost_total": 3.25,
        "current_cost": n / 1000,
        "all_adws": ["adw_plan_iso", "adw_build_iso"],
        "nl_input": "Add a settings page with dark mode " * 4,
        "model_set": "base",
        "step": n,
    }


async def measure(root: Path, durable: bool, updates: int, rate: float) -> tuple[list[float], list[float], int]:
    """Return per-update call times, update-to-client latencies, and events committed meanwhile."""
    config = load_config(
        None,
        env={},
        cwd=root,
        overrides={
            "adw.agents_dir": str(root / "agents"),
            "webhook.status_url": "",
            "broadcast.min_interval": 0,
            "event_log.path": str(root / f"events-{time.monotonic_ns()}.db") if durable else "",
        },
    )
    app: web.Application = create_app(config)
    async with TestClient(TestServer(app)) as client, client.ws_connect("/ws/adw-state/bench") as ws:
        await ws.receive_json(timeout=5)
        pipeline, store = app[PIPELINE], app[EVENT_LOG].store
        calls, latencies = [], []
        for n in range(updates):
            t0 = time.perf_counter()
            pipeline.update("adw-state:bench", state(n))
            t1 = time.perf_counter()
            message = await ws.receive_json(timeout=5)
            t2 = time.perf_counter()
            assert message["data"]["step"] == n
            calls.append(t1 - t0)
            latencies.append(t2 - t0)
            if rate:
                await asyncio.sleep(1 / rate)
            elif n % 50 == 0:
                await asyncio.sleep(0)  # let the flusher run at all
        flushed = store.flushed if isinstance(store, SqliteEventStore) else 0
    return calls, latencies, flushed


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="updates per second; 0: unpaced")
    args = parser.parse_args()
    results: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    committed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for durable in (False, True):
                calls, latencies, flushed = await measure(Path(tmp), durable, args.updates, args.rate)
                results[durable][0].extend(calls)
                results[durable][1].extend(latencies)
                committed += flushed
    pace = f"{args.rate:g} updates/s" if args.rate else "unpaced"
    print(f"{args.rounds} rounds x {args.updates} updates per store, {pace}; SQLite store committed {committed} events")
    print(f"{'':24}{'update() p50':>14}{'p99':>10}{'latency p50':>14}{'p99':>10}   (microseconds)")
    for durable, name in ((False, "in-memory log"), (True, "SQLite log (durable)")):
        calls, latencies = results[durable]
        row = [p(calls, 0.5), p(calls, 0.99), p(latencies, 0.5), p(latencies, 0.99)]
        print(f"{name:<24}" + "".join(f"{v:>{w}.1f}" for v, w in zip(row, (14, 10, 14, 10), strict=True)))
    mem, disk = results[False], results[True]
    print(
        f"ratio SQLite/in-memory: update() p50 {statistics.median(disk[0]) / statistics.median(mem[0]):.2f}, "
        f"latency p50 {statistics.median(disk[1]) / statistics.median(mem[1]):.2f}, "
        f"latency p99 {p(disk[1], 0.99) / p(mem[1], 0.99):.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
