"""The cluster view's channels: the union of every node's newest data (pure functions).

Each function takes ``{node: that node's newest data of the channel}`` and the marks of nodes not
in good standing (``{node: "unreachable"}`` when its record expired, ``"stale"`` when it is alive
but its data may be old), and returns the channel's data as one node would: same shape, items
gaining ``node`` (and ``node_status``, the node's mark), summaries and analytics
recomputed over the union, never summed from the parts. Nodes are taken in name order, so the
same inputs always give the same data (and the same digest: a republished, unchanged node sends
nothing). ``view.ClusterView`` feeds them what the nodes publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..channels import adw_data, db_data
from ..channels.specs import empty_summary
from ..channels.status import LEVELS, overall, summary_of

Nodes = Mapping[str, Any]
Marks = Mapping[str, str]  # node -> "unreachable" or "stale"
UNMARKED: Marks = {}


def _tagged(items: Any, node: str, mark: str | None) -> list[dict[str, Any]]:
    """Return a node's list items (dicts only) with its name, and its mark if it has one."""
    if not isinstance(items, list):
        return []
    extra: dict[str, Any] = {"node": node}
    if mark:
        extra["node_status"] = mark
    return [{**item, **extra} for item in items if isinstance(item, dict)]


class Tags:
    """Each node's tagged items, kept per (channel, node) while that node's data and status stay the same.

    Tagging copies every item: a view of 3 x 1,000 ADWs that tagged them all on every change
    would spend most of its time there. Holding the list it was made from makes ``is`` a safe test.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], tuple[Any, str | None, list[dict[str, Any]]]] = {}

    def items(self, channel: str, node: str, items: Any, mark: str | None) -> list[dict[str, Any]]:
        """Return ``items`` of ``node`` on ``channel``, tagged (made once per list and mark)."""
        kept = self._kept.get((channel, node))
        if kept is not None and kept[0] is items and kept[1] == mark:
            return kept[2]
        tagged = _tagged(items, node, mark)
        self._kept[(channel, node)] = (items, mark, tagged)
        return tagged

    def forget(self, node: str) -> None:
        """Drop what is kept for ``node``."""
        for key in [k for k in self._kept if k[1] == node]:
            del self._kept[key]


def _union(nodes: Nodes, channel: str, field: str, marks: Marks, tags: Tags | None) -> list[dict[str, Any]]:
    """Return the items of every node's data (``field`` of it, "" for the data itself), tagged, nodes in name order."""
    out: list[dict[str, Any]] = []
    for node in sorted(nodes):
        data = nodes[node]
        items = data if not field else data.get(field) if isinstance(data, dict) else None
        mark = marks.get(node)
        out += tags.items(channel, node, items, mark) if tags is not None else _tagged(items, node, mark)
    return out


def workflows(nodes: Nodes, marks: Marks = UNMARKED, tags: Tags | None = None) -> list[dict[str, Any]]:
    """Every node's WorkflowExecutions, each with its node."""
    return _union(nodes, "workflows", "", marks, tags)


def monitor(nodes: Nodes, marks: Marks = UNMARKED, tags: Tags | None = None) -> dict[str, Any]:
    """Every node's ADWs in one monitor: running first, newest first within a status; summary of the union."""
    items = _union(nodes, "adw-monitor", "workflows", marks, tags)
    items.sort(key=lambda w: str(w.get("start_time") or ""), reverse=True)
    items.sort(key=lambda w: adw_data.sort_rank(str(w.get("status"))))  # stable: newest first within a status
    summary = empty_summary()
    summary["total"] = len(items)
    for item in items:
        status = item.get("status")
        if isinstance(status, str) and status in summary and status not in ("total", "stalled"):
            summary[status] += 1
        summary["stalled"] += item.get("stalled") is True
    stamps = [str(d.get("last_updated")) for d in nodes.values() if isinstance(d, dict) and d.get("last_updated")]
    return {"workflows": items, "summary": summary, "last_updated": max(stamps, default="")}


def queue(nodes: Nodes, marks: Marks = UNMARKED, tags: Tags | None = None) -> dict[str, Any]:
    """Every node's phases; the queue counts as paused when any reachable node's is."""
    phases = _union(nodes, "queue", "phases", marks, tags)
    paused = any(
        isinstance(d, dict) and d.get("paused") is True for node, d in nodes.items() if marks.get(node) != "unreachable"
    )
    return {"phases": phases, "total": len(phases), "paused": paused}


def history(nodes: Nodes, marks: Marks = UNMARKED, tags: Tags | None = None) -> dict[str, Any]:
    """Every node's newest runs, newest first; analytics computed over those rows, counts summed."""
    rows = _union(nodes, "workflow-history", "workflows", marks, tags)
    rows.sort(key=lambda r: str(r.get("start_time") or r.get("created_at") or ""), reverse=True)
    total = sum(
        d["total_count"] for d in nodes.values() if isinstance(d, dict) and isinstance(d.get("total_count"), int)
    )
    return {"workflows": rows, "total_count": total, "analytics": db_data.analytics(rows)}


def adw_state(nodes: Nodes, holders: list[str], marks: Marks = UNMARKED) -> dict[str, Any]:
    """One ADW's state from the first of ``holders`` (its nodes, reachable first) that has it; else empty."""
    for node in sorted(holders, key=lambda n: (marks.get(n) == "unreachable", n)):
        data = nodes.get(node)
        if isinstance(data, dict) and data:
            return {**data, "node": node, **({"node_status": marks[node]} if node in marks else {})}
    return {}


def webhook(nodes: Nodes, marks: Marks = UNMARKED) -> dict[str, Any] | None:
    """The webhook status of the first node (by name) whose webhook answers, else of any; None if no node has one.

    The team's webhook service is one service that several nodes may poll: its status is not a
    union, so the view shows one node's view of it, preferring a reachable node it answers.
    """
    known = [n for n in sorted(nodes) if isinstance(nodes[n], dict) and nodes[n].get("status") != "unknown"]
    reachable = [n for n in known if marks.get(n) != "unreachable"]
    answering = [n for n in reachable if nodes[n].get("status") != "error"]
    for chosen in answering or reachable or known:
        return {**nodes[chosen], "node": chosen}
    return None


def system_status(
    nodes: Nodes,
    marks: Marks = UNMARKED,
    problems: Mapping[str, tuple[str, str]] | None = None,
    own: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry per node and service (``host-a/database``), plus a ``{node}/node`` entry for a node not in
    good standing (its record expired: error; ``problems``: the level and why), plus ``own``."""
    services: dict[str, Any] = {}
    for node in sorted(nodes):
        data = nodes[node]
        entries = data.get("services") if isinstance(data, dict) else None
        for name, entry in entries.items() if isinstance(entries, dict) else ():
            if isinstance(entry, dict) and isinstance(entry.get("status"), str) and entry["status"] in LEVELS:
                services[f"{node}/{name}"] = {**entry, "name": f"{node}/{name}"}  # others are not service entries
        if marks.get(node) == "unreachable":
            services[f"{node}/node"] = _node_entry(
                node, "error", "unreachable", f"{node} has not refreshed its record: its items are its last known state"
            )
    for node, (level, why) in sorted((problems or {}).items()):
        if marks.get(node) != "unreachable":
            services[f"{node}/node"] = _node_entry(node, level, level, why)
    services.update(own or {})
    stamps = [str(d.get("timestamp")) for d in nodes.values() if isinstance(d, dict) and d.get("timestamp")]
    statuses = [str(s.get("status")) for s in services.values()]
    return {
        "overall_status": overall(statuses),
        "timestamp": max(stamps, default=""),
        "services": services,
        "summary": summary_of(statuses),
    }


def _node_entry(node: str, level: str, human: str, message: str) -> dict[str, Any]:
    return {
        "name": f"{node}/node",
        "status": level,
        "uptime_seconds": 0.0,
        "uptime_human": human,
        "message": message,
        "details": {},
    }
