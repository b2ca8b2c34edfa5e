"""Canonical bytes and digests: key order never matters, volatile fields never count."""

from __future__ import annotations

from broadcaster.channels.specs import ADW_MONITOR, CATALOG, SYSTEM_STATUS, empty_digest
from broadcaster.core.events import EventLog
from broadcaster.core.snapshot import canonical, digest
from broadcaster.core.store import MemoryEventStore


def test_key_order_does_not_change_the_digest() -> None:
    assert canonical({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_volatile_fields_are_left_out_without_touching_the_data() -> None:
    data = {
        "last_updated": "2026-11-25T10:00:00",
        "workflows": [{"adw_id": "a", "duration_seconds": 5.0}, {"adw_id": "b", "duration_seconds": 9.0}],
        "summary": {"total": 2},
    }
    later = {
        "last_updated": "2026-11-25T10:05:00",
        "workflows": [{"adw_id": "a", "duration_seconds": 305.0}, {"adw_id": "b", "duration_seconds": 309.0}],
        "summary": {"total": 2},
    }
    assert (
        canonical(data, ADW_MONITOR.volatile) == b'{"summary":{"total":2},"workflows":[{"adw_id":"a"},{"adw_id":"b"}]}'
    )
    assert digest(data, ADW_MONITOR.volatile) == digest(later, ADW_MONITOR.volatile)
    assert data["workflows"][0] == {"adw_id": "a", "duration_seconds": 5.0}  # type: ignore[index]  # intact


def test_volatile_paths_through_dict_values() -> None:
    a = {"timestamp": "t1", "services": {"db": {"status": "healthy", "uptime_seconds": 1, "uptime_human": "1s"}}}
    b = {"timestamp": "t2", "services": {"db": {"status": "healthy", "uptime_seconds": 9, "uptime_human": "9s"}}}
    c = {"timestamp": "t2", "services": {"db": {"status": "error", "uptime_seconds": 9, "uptime_human": "9s"}}}
    assert digest(a, SYSTEM_STATUS.volatile) == digest(b, SYSTEM_STATUS.volatile)
    assert digest(a, SYSTEM_STATUS.volatile) != digest(c, SYSTEM_STATUS.volatile)


def test_event_log_numbers_real_changes_only() -> None:
    log = EventLog(MemoryEventStore(), catalog=CATALOG, clock=lambda: 7.0)
    assert log.record("workflows", []) is None  # equal to the empty shape: nothing to say
    first = log.record("workflows", [{"adw_id": "a"}])
    assert first is not None and (first.seq, first.type, first.timestamp) == (1, "workflows_update", 7.0)
    assert log.record("workflows", [{"adw_id": "a"}]) is None
    second = log.record("workflows", [{"adw_id": "b"}])
    assert second is not None and second.seq == 2
    other = log.record("adw-state:a", {"adw_id": "a"})
    assert other is not None and other.seq == 1  # seq is per channel
    assert log.last("workflows") == second


def test_empty_shapes_have_stable_digests() -> None:
    assert empty_digest("adw-monitor") == empty_digest("adw-monitor")
    assert empty_digest("adw-state") == digest({})
