"""workflow_history is read incrementally (new ids, newer updated_at) and equals a full read every time."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from sources.database import HistoryReader, read_history
from sources.values import Cleaner
from tests.agents_db import AgentsDb


async def test_only_new_and_updated_rows_are_fetched_and_the_result_equals_a_full_read(tmp_path: Path) -> None:
    db = AgentsDb(tmp_path / "agents.db").create(queue=False)
    for n in range(3):
        db.add_history(f"h{n}", "completed", created_at=f"2026-11-2{n} 10:00:00", updated_at="2026-11-25 10:00:00")
    cleaner = Cleaner()
    reader = HistoryReader(cleaner, full_every=6)
    async with aiosqlite.connect(
        f"{(tmp_path / 'agents.db').as_uri()}?mode=ro", uri=True, isolation_level=None
    ) as conn:

        async def read() -> list[str]:
            rows = await reader(conn)
            assert rows == await read_history(conn, cleaner)  # the same as reading everything
            return [f"{r['adw_id']}:{r['status']}" for r in rows]

        assert (await read(), reader.full_reads) == (["h2:completed", "h1:completed", "h0:completed"], 1)
        db.add_history("h3", "running", created_at="2026-11-23 10:00:00", updated_at="2026-11-25 10:00:00")
        assert (await read(), reader.full_reads) == (["h3:running", "h2:completed", "h1:completed", "h0:completed"], 1)
        db.execute(
            "UPDATE workflow_history SET status = 'failed', updated_at = '2026-11-26 09:00:00' WHERE adw_id = 'h1'"
        )
        assert (await read(), reader.full_reads) == (["h3:running", "h2:completed", "h1:failed", "h0:completed"], 1)
        db.execute("DELETE FROM workflow_history WHERE adw_id = 'h0'")  # fewer rows: read whole
        assert (await read(), reader.full_reads) == (["h3:running", "h2:completed", "h1:failed"], 2)
        # An update that leaves updated_at alone is not fetched by the incremental read...
        db.execute("UPDATE workflow_history SET status = 'completed' WHERE adw_id = 'h3'")
        rows = await reader(conn)
        assert ([r["status"] for r in rows if r["adw_id"] == "h3"], reader.full_reads) == (["running"], 2)
        # ...but by the periodic full read (every 6th), so it is never stale for long.
        assert (await read(), reader.full_reads) == (["h3:completed", "h2:completed", "h1:failed"], 3)


async def test_a_table_without_ids_or_updated_at_is_read_whole_each_time(tmp_path: Path) -> None:
    db = AgentsDb(tmp_path / "agents.db")
    db.execute("CREATE TABLE workflow_history (adw_id TEXT, status TEXT, created_at TEXT)")
    db.execute("INSERT INTO workflow_history VALUES ('a', 'completed', '2026-11-25')")
    reader = HistoryReader(Cleaner())
    async with aiosqlite.connect(
        f"{(tmp_path / 'agents.db').as_uri()}?mode=ro", uri=True, isolation_level=None
    ) as conn:
        assert [r["adw_id"] for r in await reader(conn)] == ["a"]
        db.execute("INSERT INTO workflow_history VALUES ('b', 'running', '2026-11-26')")
        assert [r["adw_id"] for r in await reader(conn)] == ["b", "a"]
        assert reader.full_reads == 2
