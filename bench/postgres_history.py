"""PostgreSQL ``workflow_history`` with many rows: what a read costs after the cluster moved.

The WAL position (the change hint) moves for a write to any table; the real backend writes
other tables all day. One cluster (Debian's, made with initdb) holds ``--rows`` history rows;
for each case the median of ``--reads`` reads, in this process, of:

- the whole table (``read_history``: the baseline, what every hint move cost before);
- ``HistoryReader`` after a write to another table (its rows' versions unchanged);
- ``HistoryReader`` after one history row was updated (that row fetched again).

    .venv/bin/python bench/postgres_history.py --rows 10000 --reads 9
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sources import postgres  # noqa: E402  (after the path: run from a checkout)
from sources.values import Cleaner  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

TABLES = (
    """CREATE TABLE workflow_history (
        id BIGSERIAL PRIMARY KEY, adw_id VARCHAR(255) NOT NULL UNIQUE, issue_number INTEGER, nl_input TEXT,
        status VARCHAR(50) NOT NULL, start_time TIMESTAMP, end_time TIMESTAMP, duration_seconds INTEGER,
        model_used VARCHAR(255), input_tokens INTEGER, total_tokens INTEGER, cache_efficiency_percent DOUBLE PRECISION,
        estimated_cost_total NUMERIC(10,4), actual_cost_total NUMERIC(10,4), cost_breakdown JSONB,
        structured_input JSONB, anomaly_flags JSONB, worktree_reused BOOLEAN DEFAULT FALSE,
        created_at TIMESTAMP NOT NULL DEFAULT now(), updated_at TIMESTAMP NOT NULL DEFAULT now())""",
    "CREATE TABLE hook_events (id BIGSERIAL PRIMARY KEY, payload JSONB NOT NULL)",
)
FILL = """INSERT INTO workflow_history (adw_id, issue_number, nl_input, status, start_time, model_used, input_tokens,
    total_tokens, cache_efficiency_percent, estimated_cost_total, actual_cost_total, cost_breakdown, structured_input,
    anomaly_flags)
  SELECT 'adw-' || g, g, repeat('word ', 40), (ARRAY['completed', 'failed', 'running'])[1 + g % 3],
    now() - g * interval '1 minute', 'claude-sonnet', g, 2 * g, 12.5, 1.25, 1.5,
    '{"by_phase": {"plan": 0.5, "build": 1.0}}', '{"level": "medium"}', '[]'
  FROM generate_series(1, $1::int) g"""


async def median_ms(reads: int, before: Callable[[int], Awaitable[Any]], read: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for n in range(reads):
        await before(n)
        start = time.perf_counter()
        await read()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=9)
    args = parser.parse_args()
    rows, reads = max(10, min(args.rows, 200_000)), max(3, min(args.reads, 100))
    pg = await PostgresServer().start()
    try:
        await pg.sql(*TABLES)
        writer = await asyncpg.connect(pg.url())
        await writer.execute(FILL, rows)
        conn = await asyncpg.connect(pg.url(), server_settings={"default_transaction_read_only": "on"})
        cleaner = Cleaner()
        reader = postgres.HistoryReader(cleaner)
        await reader(conn)

        async def other_table(n: int) -> None:
            await writer.execute("INSERT INTO hook_events (payload) VALUES ('{}')")

        async def one_row(n: int) -> None:
            await writer.execute("UPDATE workflow_history SET end_time = now() WHERE id = $1", n + 1)

        whole = await median_ms(reads, other_table, lambda: postgres.read_history(conn, cleaner))
        unchanged = await median_ms(reads, other_table, lambda: reader(conn))
        updated = await median_ms(reads, one_row, lambda: reader(conn))
        print(f"workflow_history, {rows} rows, median of {reads} reads\n")
        print("| read | ms | vs whole |\n|---|---|---|")
        print(f"| whole table (baseline) | {whole:.1f} | 1.00x |")
        print(f"| HistoryReader, another table written | {unchanged:.1f} | {unchanged / whole:.3f}x |")
        print(f"| HistoryReader, one history row updated | {updated:.1f} | {updated / whole:.3f}x |")
        await conn.close()
        await writer.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
