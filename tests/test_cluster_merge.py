"""The cluster view's merged channels (pure functions; the view that feeds them is not built yet)."""

from __future__ import annotations

from typing import Any

from broadcaster.channels.specs import empty_analytics
from broadcaster.cluster import merge
from tests.protocol_check import validator


def item(adw_id: str, status: str, start: str) -> dict[str, Any]:
    return {"adw_id": adw_id, "status": status, "start_time": start, "current_cost": 1.0}


def test_the_monitor_is_the_union_sorted_and_summarised_anew() -> None:
    nodes = {
        "host-b": {
            "workflows": [item("b1", "completed", "2026-11-25T09:00"), item("b2", "running", "2026-11-25T08:00")],
            "summary": {"total": 2, "running": 1, "completed": 1, "failed": 0, "paused": 0, "stalled": 0},
            "last_updated": "2026-11-26T10:00:01.000Z",
        },
        "host-a": {
            "workflows": [item("a1", "running", "2026-11-25T10:00"), item("a2", "failed", "2026-11-25T07:00")],
            "summary": {"total": 2, "running": 1, "completed": 0, "failed": 1, "paused": 0, "stalled": 0},
            "last_updated": "2026-11-26T10:00:02.000Z",
        },
    }
    merged = merge.monitor(nodes, {"host-b": "unreachable"})
    assert [(w["adw_id"], w["node"], w.get("node_status")) for w in merged["workflows"]] == [
        ("a1", "host-a", None),  # running, newest first
        ("b2", "host-b", "unreachable"),
        ("a2", "host-a", None),  # then failed, completed
        ("b1", "host-b", "unreachable"),
    ]
    assert merged["summary"] == {"total": 4, "running": 2, "completed": 1, "failed": 1, "paused": 0, "stalled": 0}
    assert merged["last_updated"] == "2026-11-26T10:00:02.000Z"
    assert merge.monitor(dict(reversed(nodes.items())), {"host-b": "unreachable"}) == merged  # order-free


def test_queue_workflows_and_history_merge_by_node() -> None:
    queue = merge.queue(
        {
            "b": {"phases": [{"queue_id": "q2", "phase": "API", "metadata": {}}], "total": 1, "paused": True},
            "a": {"phases": [{"queue_id": "q1", "phase": "Plan", "metadata": {}}], "total": 1, "paused": False},
        },
        {"b": "unreachable"},
    )
    assert [(p["queue_id"], p["node"]) for p in queue["phases"]] == [("q1", "a"), ("q2", "b")]
    assert (queue["total"], queue["paused"]) == (2, False)  # an unreachable node's pause does not hold the rest
    assert merge.workflows({"a": [{"adw_id": "x"}], "b": "not a list"}) == [{"adw_id": "x", "node": "a"}]
    history = merge.history(
        {
            "a": {"workflows": [{"adw_id": "h1", "status": "completed", "start_time": "2026-11-20"}], "total_count": 7},
            "b": {"workflows": [{"adw_id": "h2", "status": "failed", "start_time": "2026-11-21"}], "total_count": 5},
        }
    )
    assert [r["adw_id"] for r in history["workflows"]] == ["h2", "h1"]
    assert history["total_count"] == 12
    assert set(history["analytics"]) == set(empty_analytics())
    assert (history["analytics"]["completed_workflows"], history["analytics"]["failed_workflows"]) == (1, 1)


def test_system_status_has_an_entry_per_node_and_service_and_one_for_a_lost_node() -> None:
    entry = {"status": "healthy", "uptime_seconds": 5.0, "uptime_human": "5s", "message": None, "details": {}}
    nodes = {
        "a": {"services": {"database": {**entry, "name": "database"}}, "timestamp": "2026-11-26T10:00:00.000Z"},
        "b": {"services": {"database": {**entry, "name": "database", "status": "degraded"}}},
    }
    backplane = {**entry, "name": "backplane"}
    merged = merge.system_status(nodes, {"b": "unreachable"}, own={"backplane": backplane})
    assert sorted(merged["services"]) == ["a/database", "b/database", "b/node", "backplane"]
    assert merged["services"]["b/node"]["status"] == "error"
    assert merged["overall_status"] == "error"
    assert merged["summary"] == {"healthy_services": 2, "total_services": 4, "health_percentage": 50.0}
    for family, data in [("system-status", merged), ("queue", merge.queue({}))]:  # the channels' own shapes
        assert validator(DATA_NAMES[family]).is_valid(data_message(family, data)), family


DATA_NAMES = {"system-status": "SystemStatusUpdate", "queue": "QueueUpdate"}


def data_message(family: str, data: Any) -> dict[str, Any]:
    kind = {"system-status": "system_status_update", "queue": "queue_update"}[family]
    return {"type": kind, "channel": family, "seq": 1, "timestamp": "t", "data": data}
