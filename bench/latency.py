"""Write-to-message latency of the ADW state channel, against raw watchfiles in the same run.

    python bench/latency.py [--samples 50]

Baseline: the time from writing a state file to watchfiles (same debounce/step as the service)
reporting it. Measured: the time from writing the file to a WebSocket client receiving the
adw_state_update, through the whole service (watcher, read, digest, throttle, hub, socket).
The ratio shows what the service adds on top of being notified at all.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from watchfiles import awatch

from broadcaster import create_app, load_config


def write_state(agents: Path, adw_id: str, n: int) -> None:
    directory = agents / adw_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adw_state.json").write_bytes(orjson.dumps({"adw_id": adw_id, "issue_number": str(n), "n": n}))


async def baseline(root: Path, samples: int) -> list[float]:
    agents = root / "raw"
    agents.mkdir()
    seen: asyncio.Queue[float] = asyncio.Queue()

    async def watch() -> None:
        async for _ in awatch(agents, debounce=100, step=20, recursive=True):
            seen.put_nowait(time.perf_counter())

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.3)  # let the watcher start; not part of any measurement
    out = []
    for n in range(samples):
        t0 = time.perf_counter()
        write_state(agents, f"raw{n}", n)
        out.append(await asyncio.wait_for(seen.get(), 5) - t0)
        await asyncio.sleep(0.05)  # keep samples apart so each is its own event batch
    task.cancel()
    return out


async def service(root: Path, samples: int) -> list[float]:
    agents = root / "agents"
    agents.mkdir()
    config = load_config(
        None,
        env={},
        overrides={"adw.agents_dir": str(agents), "adw.trees_dir": str(root / "trees"), "server.port": 0},
        cwd=root,
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out = []
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(samples):
                async with session.ws_connect(f"http://127.0.0.1:{port}/ws/adw-state/svc{n}") as ws:
                    await ws.receive_json(timeout=5)  # the empty snapshot
                    t0 = time.perf_counter()
                    write_state(agents, f"svc{n}", n)
                    message = await ws.receive_json(timeout=5)
                    out.append(time.perf_counter() - t0)
                    assert message["data"]["n"] == n
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    return out


def summary(name: str, values: list[float]) -> float:
    ms = sorted(v * 1000 for v in values)
    p50 = statistics.median(ms)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(f"{name:<28} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms   (n={len(ms)})")
    return p50


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = summary("watchfiles alone (baseline)", await baseline(root, args.samples))
        full = summary("write -> WebSocket message", await service(root, args.samples))
    print(f"ratio service/baseline p50: {full / base:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
