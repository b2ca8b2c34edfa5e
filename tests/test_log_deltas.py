"""List channels are stored as deltas: the log grows with what changed, and every event reads back whole."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.channels.specs import ADW_MONITOR, CATALOG, WORKFLOWS
from broadcaster.core import deltas
from broadcaster.core.deltas import Items, Keyed
from broadcaster.core.events import Event
from broadcaster.core.sqlite_store import SqliteEventStore

MONITOR = ADW_MONITOR.keyed or Keyed("", "")


def monitor(items: list[dict[str, Any]], **rest: Any) -> dict[str, Any]:
    return {"workflows": items, "summary": {"total": len(items)}, "last_updated": "now", **rest}


def item(adw_id: str, cost: float = 0.0, text: str = "x" * 200) -> dict[str, Any]:
    return {"adw_id": adw_id, "status": "running", "current_cost": cost, "title": text}


def rows(path: Path, channel: str) -> list[tuple[int, int | None, int]]:
    """Return (seq, base, bytes) of each stored row of ``channel``, oldest first."""
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT seq, base, length(data) FROM events WHERE channel = ? ORDER BY seq", (channel,)
        ).fetchall()
    db.close()
    return [(int(s), None if b is None else int(b), int(n)) for s, b, n in found]


# A list of items with unique ids, then a new list made of it by changes that keep the order of
# the items left alone (as a sorted channel does): some removed, some changed in place, some moved
# or added at any index.
@st.composite
def lists_and_changes(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), unique=True, max_size=12))
    old: list[dict[str, Any]] = [{"adw_id": i, "v": draw(st.integers(0, 3))} for i in ids]
    new = [dict(x) for x in old if not draw(st.booleans()) or len(old) < 2]
    for x in new:
        if draw(st.booleans()):
            x["v"] = int(x["v"]) + 10
    for extra in draw(st.lists(st.text("xyz", min_size=1, max_size=2), unique=True, max_size=3)):
        if extra not in {x["adw_id"] for x in new}:
            new.insert(draw(st.integers(0, len(new))), {"adw_id": extra, "v": -1})
    return old, new


@settings(max_examples=300, deadline=None)
@given(lists_and_changes())
def test_a_delta_rebuilds_the_new_list_exactly(change: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    old, new = change
    for keyed, wrap in ((WORKFLOWS.keyed, lambda x: x), (MONITOR, monitor)):
        assert keyed is not None
        base = deltas.base_of(wrap(old), keyed)
        assert base is not None
        found = deltas.diff(base, wrap(new), keyed)
        assert found is not None  # the unchanged items kept their order: a delta always does
        delta, _ = found
        stored = orjson.loads(orjson.dumps(delta))  # what the log holds is JSON
        rebuilt = deltas.apply(deltas.base_of(wrap(old), keyed) or base, stored, keyed)
        assert deltas.data_of(rebuilt, keyed) == wrap(new)
        assert len(delta["set"]) == sum(1 for x in new if x not in old)


def test_no_delta_when_an_unchanged_item_moved_or_ids_are_unusable() -> None:
    keyed = WORKFLOWS.keyed
    assert keyed is not None
    a, b, c = ({"adw_id": i} for i in "abc")
    base = deltas.base_of([a, b, c], keyed)
    assert base is not None
    assert deltas.diff(base, [b, a, c], keyed) is None  # b and a swapped, neither changed
    assert deltas.base_of([a, {"adw_id": "a"}], keyed) is None  # a repeated id
    assert deltas.base_of([a, {"adw_id": 7}], keyed) is None  # an id that is not text
    assert deltas.base_of({"not": "a list"}, keyed) is None


async def test_one_item_changed_is_stored_as_that_item_and_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path, catalog=CATALOG)
    await store.open()
    items = [item(f"{n:04x}") for n in range(300)]
    states = [monitor(list(items))]
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randrange(len(items))
        items[n] = item(items[n]["adw_id"], cost=rng.random())
        states.append(monitor(list(items)))
    for seq, data in enumerate(states, start=1):
        store.append(Event("adw-monitor", seq, "adw_monitor_update", data, f"d{seq}", float(seq)))
    await store.flush()
    assert [e.data for _, e in await store.events("adw-monitor", 0, 100)] == states
    assert [e.data for _, e in await store.events("adw-monitor", 30, 100)] == states[30:]  # from the middle
    assert [e.seq for _, e in await store.events(None, 35, 3)] == [36, 37, 38]
    await store.close()

    stored = rows(path, "adw-monitor")
    whole = stored[0][2]
    assert [(seq, base) for seq, base, _ in stored] == [(1, None)] + [(s, s - 1) for s in range(2, 42)]
    assert max(n for _, _, n in stored[1:]) < whole / 100  # one item of 300, not the list

    reopened = SqliteEventStore(path, catalog=CATALOG)
    loaded = await reopened.open()
    assert loaded.last["adw-monitor"].data == states[-1]
    assert reopened.undecodable == 0
    await reopened.close()


async def test_a_whole_row_comes_back_once_the_deltas_add_up_to_one(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path, catalog=CATALOG)
    await store.open()
    phases = [{"queue_id": f"q{n}", "status": "queued", "note": ""} for n in range(5)]
    for seq in range(1, 31):
        phases[seq % 5] = {**phases[seq % 5], "note": "changed" * 10 + str(seq)}
        store.append(Event("queue", seq, "queue_update", {"phases": list(phases), "total": 5}, f"d{seq}", 1.0))
    await store.flush()
    assert [e.data for _, e in await store.events("queue", 0, 100)][-1]["phases"] == phases
    await store.close()
    stored = rows(path, "queue")
    whole = [seq for seq, base, _ in stored if base is None]
    assert whole[0] == 1 and len(whole) >= 3  # deltas of 1 phase in 5 outweigh a whole row after a few
    whole_bytes = since_whole = 0
    for seq, base, n in stored:
        assert base in (None, seq - 1)
        if base is None:
            whole_bytes, since_whole = n, 0
        else:
            since_whole += n
            assert since_whole <= whole_bytes  # rebuilding never reads more than twice a whole row


async def changed_one_by_one(path: Path, *, size: int, changes: int) -> tuple[SqliteEventStore, list[Any]]:
    """Return a store (keeping 5 per channel) holding ``changes`` monitor events, one item changed each."""
    store = SqliteEventStore(path, catalog=CATALOG, keep_per_channel=5, clock=lambda: 100.0)  # nothing too old
    await store.open()
    items = [item(str(n)) for n in range(size)]
    states = []
    for seq in range(1, changes + 1):
        items[seq % size] = item(str(seq % size), cost=seq)
        states.append(monitor(list(items)))
        store.append(Event("adw-monitor", seq, "adw_monitor_update", states[-1], f"d{seq}", 1.0))
    await store.flush()
    return store, states


async def test_trimming_keeps_the_whole_row_that_kept_deltas_stand_on(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store, states = await changed_one_by_one(path, size=100, changes=20)
    assert await store.trim() == 0  # seqs 1-15 are past the count, but 16-20 stand on seq 1
    assert [e.data for _, e in await store.events("adw-monitor", 0, 100)] == states
    await store.close()
    assert [base for _, base, _ in rows(path, "adw-monitor")] == [None] + [s - 1 for s in range(2, 21)]


async def test_trimming_drops_what_lies_before_the_kept_events_whole_row(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store, states = await changed_one_by_one(path, size=4, changes=40)  # one item of four: often whole
    removed = await store.trim()
    kept = await store.events("adw-monitor", 0, 100)
    assert [e.data for _, e in kept] == states[40 - len(kept) :]
    assert removed == 40 - len(kept) and 5 <= len(kept) < 40
    first = kept[0][1].seq
    assert store.contiguous_from("adw-monitor") == first
    await store.close()
    stored = rows(path, "adw-monitor")
    assert stored[0][:2] == (first, None)  # what is kept starts whole
    assert [seq for seq, _, _ in stored] == list(range(first, 41))  # nothing before it, nothing missing after


async def test_items_that_know_their_ids_are_stored_like_any_list(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path, catalog=CATALOG)
    await store.open()
    first = [orjson.Fragment(orjson.dumps(item(i))) for i in "abc"]
    second = [first[0], orjson.Fragment(orjson.dumps(item("b", cost=2.0))), first[2]]
    store.append(Event("workflows", 1, "workflows_update", Items(first, ["a", "b", "c"]), "d1", 1.0))
    store.append(Event("workflows", 2, "workflows_update", Items(second, ["a", "b", "c"]), "d2", 1.0))
    await store.flush()
    await store.close()
    assert [(seq, base) for seq, base, _ in rows(path, "workflows")] == [(1, None), (2, 1)]
    with sqlite3.connect(path) as db:
        [(delta,)] = db.execute("SELECT data FROM events WHERE channel = 'workflows' AND seq = 2").fetchall()
    db.close()
    assert orjson.loads(delta) == {"set": [["b", 1, item("b", cost=2.0)]], "del": []}
    reopened = SqliteEventStore(path, catalog=CATALOG)
    loaded = await reopened.open()
    assert loaded.last["workflows"].data == [item("a"), item("b", cost=2.0), item("c")]
    await reopened.close()


async def test_a_delta_whose_base_is_gone_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path, catalog=CATALOG)
    await store.open()
    phases = [{"queue_id": f"q{n}", "n": 0, "pad": "p" * 100} for n in range(20)]
    for seq in (1, 2, 3):
        phases[seq] = {**phases[seq], "n": seq}
        store.append(Event("queue", seq, "queue_update", {"phases": list(phases)}, f"d{seq}", 1.0))
    await store.flush()
    await store.close()
    assert [(seq, base) for seq, base, _ in rows(path, "queue")] == [(1, None), (2, 1), (3, 2)]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET data = 'not json' WHERE seq = 1")
    db.close()
    reopened = SqliteEventStore(path, catalog=CATALOG)
    loaded = await reopened.open()
    assert (loaded.last["queue"].seq, loaded.last["queue"].digest) == (3, "")  # the seq stays; data unknown
    assert await reopened.events("queue", 0, 10) == []
    assert reopened.undecodable == 3  # the broken row, and both deltas standing on it, each once
    await reopened.events("queue", 0, 10)
    assert reopened.undecodable == 3
    await reopened.close()
