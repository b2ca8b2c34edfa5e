"""The eight channels (docs/protocol.md, "Channels"): everything particular to each, its builder included."""

from __future__ import annotations

import re
from typing import Any

from ..config.rules import SELF
from ..core.clock import now_iso
from ..core.deltas import Keyed
from ..core.spec import Catalog, ChannelSpec
from ..errors import InvalidAdwId
from . import adw_data, db_data, service_data
from .adw_data import empty_summary
from .adw_index import AdwIndex
from .db_data import empty_analytics
from .health import Health

__all__ = [
    "CATALOG",
    "SPECS",
    "adw_id_of",
    "adw_state_channel",
    "channel_name",
    "empty_analytics",
    "empty_digest",
    "empty_summary",
    "spec_of",
    "validate_adw_id",
]


WORKFLOWS = ChannelSpec(
    "workflows",
    "workflows_update",
    list,
    keyed=Keyed("", "adw_id"),
    service="adw_files",
    schema="WorkflowExecutionList",
    build=AdwIndex.workflows,
)
ROUTES = ChannelSpec(
    "routes",
    "routes_update",
    list,
    keyed=Keyed("", ("method", "path")),
    service="openapi",
    schema="RouteList",
    build=service_data.merge_routes,
)
WORKFLOW_HISTORY = ChannelSpec(
    "workflow-history",
    "workflow_history_update",
    lambda: {"workflows": [], "total_count": 0, "analytics": empty_analytics()},
    volatile=(("analytics", "cost_trend_7day"), ("analytics", "cost_trend_30day")),  # relative to now
    keyed=Keyed("workflows", "adw_id"),
    clock_values=True,
    service="database",
    schema="WorkflowHistory",
    build=db_data.history,
)
ADW_STATE = ChannelSpec(
    "adw-state",
    "adw_state_update",
    dict,
    param="adw_id",
    service="adw_files",
    schema="AdwState",
    build=adw_data.adw_state,
)
ADW_MONITOR = ChannelSpec(
    "adw-monitor",
    "adw_monitor_update",
    lambda: {"workflows": [], "summary": empty_summary(), "last_updated": now_iso()},
    volatile=(("last_updated",), ("workflows", "*", "duration_seconds"), ("workflows", "*", "stalled_seconds")),
    keyed=Keyed("workflows", "adw_id"),
    clock_values=True,
    service="adw_files",
    schema="AdwMonitor",
    build=AdwIndex.monitor,
)
QUEUE = ChannelSpec(
    "queue",
    "queue_update",
    lambda: {"phases": [], "total": 0, "paused": False},
    keyed=Keyed("phases", "queue_id"),
    service="database",
    schema="Queue",
    build=db_data.queue,
)
SYSTEM_STATUS = ChannelSpec(
    "system-status",
    "system_status_update",
    lambda: {
        "overall_status": "unknown",  # never healthy with zero services
        "timestamp": now_iso(),
        "services": {},
        "summary": {"healthy_services": 0, "total_services": 0, "health_percentage": 0.0},
    },
    volatile=(("timestamp",), ("services", "*", "uptime_seconds"), ("services", "*", "uptime_human")),
    clock_values=True,
    service=SELF,
    schema="SystemStatus",
    build=Health.report,
)
WEBHOOK_STATUS = ChannelSpec(
    "webhook-status",
    "webhook_status_update",
    lambda: {"status": "unknown", "message": "not polled yet"},
    volatile=(("uptime",),),  # the webhook service's own clock: left out of the digest, never recomputed here
    service="webhook",
    schema="WebhookStatus",
    build=service_data.webhook_status,
)
ALERTS = ChannelSpec(
    "alerts",
    "alerts_update",
    lambda: {"open": [], "recent": []},
    service="alerts",
    schema="Alerts",
    # no builder: the alert book (broadcaster.alerts) is the data, offered as it changes
)

CATALOG = Catalog(
    (WORKFLOWS, ROUTES, WORKFLOW_HISTORY, ADW_STATE, ADW_MONITOR, QUEUE, SYSTEM_STATUS, WEBHOOK_STATUS, ALERTS)
)
"""Every channel family, handed to the core (the event log, its store, the hub) by ``create_app``."""
SPECS: dict[str, ChannelSpec] = CATALOG.specs

_ADW_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def validate_adw_id(adw_id: str) -> str:
    """Return ``adw_id`` if it is a plain directory name, else raise InvalidAdwId."""
    if not _ADW_ID.fullmatch(adw_id) or adw_id in (".", ".."):
        raise InvalidAdwId(f"invalid adw_id {adw_id[:80]!r}: use 1-64 letters, digits, '_', '.', '-'")
    return adw_id


def adw_state_channel(adw_id: str) -> str:
    """Return the channel name of one ADW's state."""
    return f"adw-state:{adw_id}"


def spec_of(channel: str) -> ChannelSpec:
    """Return the spec of a channel name such as ``queue`` or ``adw-state:77c90e61``."""
    return CATALOG.spec_of(channel)


def adw_id_of(channel: str) -> str | None:
    """Return the adw_id of an ``adw-state:{id}`` channel, else None."""
    family, _, adw_id = channel.partition(":")
    return adw_id if family == ADW_STATE.family else None


def empty_digest(family: str) -> str:
    """Return the digest of a channel family's empty shape (the state before any data)."""
    return CATALOG.empty_digest(family)


def channel_name(name: Any) -> str:
    """Return ``name`` if it is a channel of docs/protocol.md's table; raise ValueError saying why not."""
    if not isinstance(name, str):
        raise ValueError(f"a channel name is a string, got {type(name).__name__}")
    family, colon, adw_id = name.partition(":")
    if family not in SPECS:
        raise ValueError(f"unknown channel; the channels are {', '.join(sorted(SPECS))} (adw-state:{{adw_id}})")
    if family == "adw-state":
        try:
            validate_adw_id(adw_id)
        except InvalidAdwId as exc:
            raise ValueError(str(exc)) from None
    elif colon:
        raise ValueError(f"{family} takes no ':' suffix")
    return name
