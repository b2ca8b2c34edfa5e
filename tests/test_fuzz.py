"""Property-based fuzz of the three places outside input enters: nothing escapes, everything encodes."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broadcaster.channels import adw_data, db_data
from broadcaster.channels.specs import SPECS
from broadcaster.core.protocol import reply_to
from broadcaster.core.snapshot import digest
from sources.adw_read import read_dirs
from sources.database import QueueData, phase_item
from sources.values import Cleaner, as_float, as_int

CLEANER = Cleaner()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Return lists and objects of ``leaves``, a few levels deep."""
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=20,
    )


json_values = nested(scalars)
state_keys = st.sampled_from(
    [
        "issue_number",
        "status",
        "current_phase",
        "start_time",
        "end_time",
        "current_cost",
        "estimated_cost_total",
        "error_count",
        "nl_input",
        "github_url",
        "pr_number",
        "api_key",
        "total_tokens",
        "workflow_template",
    ]
)
states = st.dictionaries(state_keys | st.text(max_size=12), json_values, max_size=10)
deep = st.integers(min_value=60, max_value=1100).flatmap(
    lambda n: st.sampled_from([("[" * n + "]" * n).encode(), ('{"n":' * n + "1" + "}" * n).encode()])
)
state_bytes = st.one_of(
    st.binary(max_size=300),
    states.map(lambda s: json.dumps(s, allow_nan=True).encode()),
    deep,
    st.integers(min_value=0, max_value=5000).map(lambda n: b'{"issue_number": "' + b"9" * n + b'"}'),
)


def encodes(data: Any) -> None:
    orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


@SETTINGS
@given(raw=state_bytes)
def test_any_state_file_reads_into_data_that_encodes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp)
        (agents / "a1").mkdir()
        (agents / "a1" / "adw_state.json").write_bytes(raw)
        record = read_dirs(agents, ["a1"], 1024 * 1024, CLEANER)["a1"]
    assert record is not None
    assert (record.state is None) != (record.error is None)  # a state, or why there is none
    state = adw_data.adw_state("a1", record)
    monitor = adw_data.monitor([record])
    workflows = adw_data.workflows([record])
    for family, data in (("adw-state", state), ("adw-monitor", monitor), ("workflows", workflows)):
        encodes(data)
        digest(data, SPECS[family].volatile)
    assert [w.get("problem") for w in monitor["workflows"]] == [None] * len(monitor["workflows"])


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), json_values.map(lambda v: json.dumps({"type": "ping", "timestamp": v}))))
def test_any_client_message_gets_no_answer_or_one_that_parses(text: str) -> None:
    reply = reply_to(text)
    assert reply is None or reply == b"pong" or orjson.loads(reply)["type"] == "pong"


sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=True),  # SQLite stores NaN as NULL
    st.text(max_size=30),
    st.binary(max_size=30),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(min_value=0, max_value=3000).map(lambda n: "[" * n + "]" * n),
)
COLUMNS = ("queue_id", "feature_id", "phase_number", "status", "phase_data", "depends_on_phases", "adw_id", "priority")


@SETTINGS
@given(
    rows=st.lists(st.tuples(*[sqlite_values] * len(COLUMNS)), min_size=1, max_size=5), bad_text=st.binary(max_size=20)
)
def test_any_database_row_normalises_into_a_queue_that_encodes(rows: list[tuple[Any, ...]], bad_text: bytes) -> None:
    conn = sqlite3.connect(":memory:")
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")  # as sources.sqlite sets it
    conn.execute(f"CREATE TABLE phase_queue ({', '.join(COLUMNS)}, error_message TEXT)")
    for row in rows:  # the bytes are also stored as TEXT that is not UTF-8
        conn.execute(
            f"INSERT INTO phase_queue VALUES ({', '.join('?' * len(COLUMNS))}, CAST(? AS TEXT))", (*row, bad_text)
        )
    cursor = conn.execute("SELECT * FROM phase_queue")
    names = [d[0] for d in cursor.description]
    items = [phase_item(CLEANER.clean(dict(zip(names, r, strict=True))), CLEANER) for r in cursor.fetchall()]
    conn.close()
    data = db_data.queue(QueueData(items, paused=False))
    encodes(data)
    digest(data, SPECS["queue"].volatile)
    statuses = db_data.queue_status_by_adw(items)
    assert all(isinstance(v, str) for v in statuses.values())


@SETTINGS
@given(value=json_values | st.binary())
def test_numbers_are_read_without_raising(value: Any) -> None:
    number, real = as_int(value), as_float(value)
    assert number is None or -(2**63) <= number < 2**64
    assert real is None or real == real and abs(real) != float("inf")
    encodes(CLEANER.clean(value))


# What a node's entry on the bus decodes to: JSON values (no NaN, no infinity), shaped like the
# channels or not at all.
bus_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
bus_values = nested(bus_scalars)
bus_items = st.dictionaries(
    st.sampled_from(["adw_id", "status", "start_time", "queue_id", "actual_cost_total", "created_at"])
    | st.text(max_size=6),
    st.sampled_from(["a1", "running", "completed", "healthy", "error"]) | bus_values,
    max_size=6,
)
bus_data = st.one_of(
    bus_values,
    st.lists(bus_items, max_size=4),
    st.dictionaries(
        st.sampled_from(["workflows", "phases", "services", "summary", "total_count", "paused", "timestamp", "status"]),
        bus_values | st.lists(bus_items, max_size=4) | st.dictionaries(st.text(max_size=8), bus_items, max_size=3),
        max_size=5,
    ),
)


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), bus_data, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["unreachable", "stale"])),
)
@example({"a": {"workflows": [{"adw_id": "x", "status": ["running"]}]}}, {})
@example({"a": {"services": {"db": {"status": ["healthy"]}, "x": {"status": "fine"}}}}, {})
def test_any_node_data_merges_into_data_that_encodes(nodes: dict[str, Any], gone: dict[str, str]) -> None:
    from broadcaster.cluster import merge
    from broadcaster.cluster.bus import BadEntry, checked_items

    for channel, build in (
        ("workflows", merge.workflows),
        ("adw-monitor", merge.monitor),
        ("queue", merge.queue),
        ("workflow-history", merge.history),
    ):
        checked = {}
        for node, data in nodes.items():
            try:
                checked[node] = checked_items(node, channel, data)[0]
            except BadEntry:
                continue
        digest(build(checked, gone), SPECS[channel].volatile)
    problems = {n: ("degraded", "late") for n, mark in gone.items() if mark == "stale"}
    status = merge.system_status(nodes, gone, problems)
    digest(status, SPECS["system-status"].volatile)
    assert {entry["status"] for entry in status["services"].values()} <= {"healthy", "degraded", "error"}
    digest(merge.webhook(nodes, gone))
    digest(merge.adw_state(nodes, sorted(nodes), gone))

    # The view around the merges: every channel offered builds and encodes.
    from broadcaster.cluster.follower import Batch, Newest
    from broadcaster.cluster.view import ClusterView

    offered: dict[str, Any] = {}

    class Outlet:
        history_rows: list[dict[str, Any]] = []

        def offer(self, channel: str, build: Any) -> None:
            offered[channel] = build()

        def refresh_status(self) -> None:
            offered["system-status"] = view.refreshed(view.system_status({"services": {}}))

        def reported(self, part: str) -> None:
            pass

    view = ClusterView(Outlet(), current=list)
    shared = ("workflows", "adw-monitor", "queue", "workflow-history", "system-status", "webhook-status")
    parts = {(node, channel): Newest(data, digest(data)) for node, data in nodes.items() for channel in shared}
    lost = frozenset(n for n, mark in gone.items() if mark == "unreachable")
    view.apply(Batch(parts, alive=frozenset(nodes) - lost, gone=lost & frozenset(nodes), problems=problems))
    view.apply(Batch({}, alive=frozenset()))
    for data in offered.values():
        orjson.dumps(data)
