"""Alerts: does delivery slow the feeds? State change -> monitor message, with destinations that fail.

The service runs as a process (``min_interval = 0``, ``process_scan = false``); a client on
``/ws/adw-monitor`` times ``--changes`` state-file writes, each of which flips an ADW between
failed and running, so every change also opens or resolves an alert that delivery must send.
Three runs in one invocation:

- no destination (the baseline: the alerts channel only);
- a receiver that is down (connection refused: every send fails at once and is retried);
- a receiver that accepts and never answers (every send waits for Apprise's timeout).

    .venv/bin/python bench/alerts.py --changes 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from common import free_port, launch, stop


def save(agents: Path, adw_id: str, **state: object) -> None:
    directory = agents / adw_id
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".adw_state.json.tmp"
    tmp.write_bytes(orjson.dumps({"adw_id": adw_id, **state}))
    os.replace(tmp, directory / "adw_state.json")


async def latencies(url: str, changes: int) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="alerts-bench-"))
    agents = work / "agents"
    save(agents, "a1", status="running", issue_number=1, step=0)
    urls = f"urls = ['{url}']\n" if url else ""
    (work / "config.toml").write_text(
        '[server]\nport = 0\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        "[adw]\nagents_dir = 'agents'\ntrees_dir = 'trees'\nprocess_scan = false\n"
        f"[alerts]\n{urls}retries = 2\n"
    )
    proc, port = await launch(work)
    seen: list[float] = []
    try:
        url = f"http://127.0.0.1:{port}/ws/adw-monitor"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.receive_json(timeout=10)
            for n in range(1, changes + 1):
                await asyncio.sleep(0.15)
                started = time.perf_counter()
                save(agents, "a1", status="failed" if n % 2 else "running", issue_number=1, step=n)
                while True:
                    message = await ws.receive_json(timeout=10)
                    if message.get("type") == "adw_monitor_update":
                        item = message["data"]["workflows"][0]
                        if item["status"] == ("failed" if n % 2 else "running"):
                            seen.append((time.perf_counter() - started) * 1000)
                            break
    finally:
        stop(proc, work)
    return seen


def row(name: str, ms: list[float], base: float) -> str:
    ms = sorted(ms)
    p50 = statistics.median(ms)
    return f"| {name} | {p50:.1f} | {ms[int(len(ms) * 0.95) - 1]:.1f} | {ms[-1]:.1f} | {p50 / base:.2f}x |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=40)
    changes = max(10, min(parser.parse_args().changes, 400))

    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, read never, answered never

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    runs = {
        "no destination (baseline)": "",
        "receiver down (refused)": f"json://127.0.0.1:{free_port()}/hook",
        "receiver never answers": f"json://127.0.0.1:{silent_port}/hook",
    }
    results = {name: await latencies(url, changes) for name, url in runs.items()}
    silent.close()
    for writer in held:
        writer.close()
    base = statistics.median(results["no destination (baseline)"])
    print(f"state change -> monitor message, {changes} changes each (every one opens or resolves an alert)\n")
    print("| destination | p50 ms | p95 ms | max ms | p50 vs baseline |\n|---|---|---|---|---|")
    for name, ms in results.items():
        print(row(name, ms, base))


if __name__ == "__main__":
    asyncio.run(main())
