"""PostgreSQL source: commit -> client latency (hint polled, and LISTEN) against SQLite, and the idle query rate.

One PostgreSQL cluster (Debian's, made with initdb, as tests/helpers.PostgresServer does) and one
SQLite file hold the same phase_queue. For each source the service runs as a process with the
defaults (``poll_interval = 0.25``, ``min_interval = 1``); a client on ``/ws/queue`` times each of
``--commits`` commits (one every 1.2-1.7 s, so the throttle's leading edge sends it at once) from the
writer's commit to the message. Then, the PostgreSQL service left idle for ``--idle`` seconds,
the transactions it cost the database (``pg_stat_database.xact_commit``) per second.

    .venv/bin/python bench/postgres.py --commits 20 --idle 20
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from common import launch, stop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import PostgresServer  # noqa: E402  (after the path: run from a checkout)

TABLE = "CREATE TABLE phase_queue (queue_id TEXT PRIMARY KEY, feature_id INTEGER, phase_number INTEGER, status TEXT)"


def config(work: Path, database: str) -> None:
    (work / "agents").mkdir(exist_ok=True)
    (work / "config.toml").write_text(
        '[server]\nport = 0\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        f"[adw]\nagents_dir = 'agents'\ntrees_dir = 'trees'\n[database]\n{database}\n"
    )


async def latencies(work: Path, commit: object, commits: int) -> list[float]:
    proc, port = await launch(work)
    seen: list[float] = []
    rng = random.Random(7)
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/ws/queue") as ws:
            await ws.receive_json(timeout=10)
            for n in range(commits):
                await asyncio.sleep(1.2 + rng.random() * 0.5)  # not in step with the 0.25 s hint poll
                started = time.perf_counter()
                await commit(n)  # type: ignore[operator]
                while True:
                    message = await ws.receive_json(timeout=10)
                    if message.get("type") == "queue_update" and any(
                        p.get("status") == f"s{n}" for p in message["data"]["phases"]
                    ):
                        seen.append((time.perf_counter() - started) * 1000)
                        break
    finally:
        stop(proc, work, keep=True)
    return seen


def row(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    return f"| {name} | {statistics.median(ms):.0f} | {ms[int(len(ms) * 0.95) - 1]:.0f} | {ms[-1]:.0f} |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--idle", type=float, default=20)
    args = parser.parse_args()
    commits = max(5, min(args.commits, 200))
    pg = await PostgresServer().start()
    work = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    try:
        await pg.sql(TABLE, "INSERT INTO phase_queue VALUES ('q-1', 1, 1, 'queued')")
        writer = await asyncpg.connect(pg.url())

        async def pg_commit(n: int) -> None:
            await writer.execute("UPDATE phase_queue SET status = $1", f"s{n}")

        async def pg_notify(n: int) -> None:
            async with writer.transaction():
                await writer.execute("UPDATE phase_queue SET status = $1", f"s{n}")
                await writer.execute("NOTIFY queue_changed")

        lite = sqlite3.connect(work / "agents.db", isolation_level=None)
        lite.execute(TABLE)
        lite.execute("INSERT INTO phase_queue VALUES ('q-1', 1, 1, 'queued')")

        async def lite_commit(n: int) -> None:
            lite.execute("UPDATE phase_queue SET status = ?", (f"s{n}",))

        url = f"url = '{pg.url()}'"
        results = {}
        config(work, "path = 'agents.db'")
        results["SQLite (baseline)"] = await latencies(work, lite_commit, commits)
        config(work, url)
        results["PostgreSQL, WAL position polled every 0.25 s"] = await latencies(work, pg_commit, commits)
        config(work, url + "\nlisten = ['queue_changed']")
        results["PostgreSQL, LISTEN + NOTIFY"] = await latencies(work, pg_notify, commits)
        print(f"commit -> client, {commits} commits each\n\n| source | p50 ms | p95 ms | max ms |\n|---|---|---|---|")
        for name, ms in results.items():
            print(row(name, ms))

        config(work, url)
        proc, _ = await launch(work)
        try:
            await asyncio.sleep(3)
            count = "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'"
            before = await writer.fetchval(count)
            await asyncio.sleep(args.idle)
            after = await writer.fetchval(count)
        finally:
            stop(proc, work, keep=True)
        rate = (after - before - 1) / args.idle  # less the measuring query itself
        print(f"\nidle service: {rate:.1f} transactions a second on the database (the hint query)")
        await writer.close()
        lite.close()
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
