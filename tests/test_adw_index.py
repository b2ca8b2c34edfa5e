"""The per-ADW index gives exactly the data the plain views build, with digests that move when they do."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.channels import adw_data
from broadcaster.channels.adw_index import AdwIndex
from broadcaster.channels.specs import ADW_MONITOR, WORKFLOWS
from broadcaster.core.snapshot import digest
from sources.adw_read import PHASES, AdwRecord

states = st.fixed_dictionaries(
    {},
    optional={
        "issue_number": st.one_of(st.integers(0, 999), st.sampled_from(["7", "²", "x", ""])),
        "status": st.sampled_from(["running", "completed", "failed", "paused", "pending", "odd"]),
        "start_time": st.sampled_from(["2026-11-26T10:00:00", "2026-11-26T09:00:00", "2026-11-25", ""]),
        "current_phase": st.sampled_from(PHASES),
        "current_cost": st.floats(0, 10),
        "nl_input": st.text(max_size=5),
    },
)
records = st.dictionaries(
    st.sampled_from([f"a{n}" for n in range(8)]),
    st.one_of(st.none(), st.tuples(states, st.lists(st.sampled_from(PHASES), unique=True, max_size=3))),
    max_size=8,
)


def plain(data: Any) -> Any:
    return orjson.loads(orjson.dumps(data))


def build(spec: dict[str, Any]) -> dict[str, AdwRecord]:
    out = {}
    for adw_id, value in spec.items():
        if value is None:
            out[adw_id] = AdwRecord(adw_id, None)
        else:
            state, phases = value
            out[adw_id] = AdwRecord(adw_id, state, tuple(p for p in PHASES if p in phases))
    return out


@settings(max_examples=200, deadline=None)
@given(first=records, second=records, worktrees=st.frozensets(st.sampled_from([f"a{n}" for n in range(8)])))
def test_the_index_builds_what_the_views_build_and_digests_move_with_them(first, second, worktrees) -> None:
    index = AdwIndex(github_repo="acme/shop")
    queue = {"a1": "running", "a2": "blocked"}
    before = build(first)
    index.update(before, before, worktrees=worktrees, queue_status=queue)
    after = {**before, **build(second)}
    index.update(second, after, worktrees=worktrees, queue_status=queue)  # only the ADWs that changed

    data, wf_digest = index.workflows()
    expected = adw_data.workflows(after.values(), github_repo="acme/shop")
    assert plain(data) == expected
    monitor, mon_digest = index.monitor()
    expected_monitor = adw_data.monitor(
        after.values(), worktrees=worktrees, queue_status=queue, github_repo="acme/shop"
    )
    got = plain(monitor)
    for item in got["workflows"] + expected_monitor["workflows"]:
        item.pop("duration_seconds")  # volatile: computed at build time
    got.pop("last_updated")
    expected_monitor.pop("last_updated")
    assert got == expected_monitor

    fresh = AdwIndex(github_repo="acme/shop")  # the same data built in one go has the same digests
    fresh.update(after, after, worktrees=worktrees, queue_status=queue)
    assert (fresh.workflows()[1], fresh.monitor()[1]) == (wf_digest, mon_digest)
    if not expected:  # empty: the ordinary digest, so the empty shape stays "no change"
        assert wf_digest is None and digest(plain(data), WORKFLOWS.volatile) == digest([], ())
    if not expected_monitor["workflows"]:
        assert mon_digest is None and ADW_MONITOR.volatile


def test_a_change_of_one_adw_changes_the_digest_and_an_undo_restores_it() -> None:
    recs = {f"a{n}": AdwRecord(f"a{n}", {"issue_number": n, "status": "running"}) for n in range(50)}
    index = AdwIndex()
    index.update(recs, recs, worktrees=frozenset(), queue_status={})
    digests = (index.workflows()[1], index.monitor()[1])
    changed = {**recs, "a7": AdwRecord("a7", {"issue_number": 7, "status": "completed"})}
    assert index.update({"a7"}, changed, worktrees=frozenset(), queue_status={}) == (False, True)
    assert index.update({"a7"}, changed, worktrees=frozenset(), queue_status={}) == (False, False)
    assert index.workflows()[1] == digests[0]  # its WorkflowExecution did not change
    assert index.monitor()[1] != digests[1]
    assert plain(index.monitor()[0])["summary"] == {
        "total": 50,
        "running": 49,
        "completed": 1,
        "failed": 0,
        "paused": 0,
        "stalled": 0,
    }
    assert index.update({"a7"}, recs, worktrees=frozenset(), queue_status={}) == (False, True)
    assert (index.workflows()[1], index.monitor()[1]) == digests
    gone = {k: v for k, v in recs.items() if k != "a3"}
    assert index.update({"a3"}, gone, worktrees=frozenset(), queue_status={}) == (True, True)
