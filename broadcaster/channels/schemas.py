"""JSON Schemas (2020-12) of every channel's data and of every message, for the protocol documents.

Shapes follow docs/protocol.md; ``required`` lists what the service always sends (and what the real
React client reads). Values copied from the agents' files and database pass through the
``Cleaner``, so they can be any JSON: such fields have no type here. The tests validate every
message and answer they receive against these, which keeps them true.
"""

from __future__ import annotations

from typing import Any

from ..config.rules import ALERT_RULES
from .specs import SPECS, empty_analytics

Schema = dict[str, Any]

NUMBER: Schema = {"type": "number"}
COUNT: Schema = {"type": "integer", "minimum": 0}
TEXT: Schema = {"type": "string"}
MAYBE_TEXT: Schema = {"type": ["string", "null"]}
MAYBE_NUMBER: Schema = {"type": ["number", "null"]}
TIME: Schema = {"type": "string", "description": "ISO 8601, UTC, milliseconds: 2026-11-25T10:00:00.123Z"}
ADW_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}
CHANNEL: Schema = {
    "type": "string",
    "description": "a channel name: workflows, routes, workflow-history, adw-monitor, queue, system-status, "
    "webhook-status, alerts, or adw-state:{adw_id}",
    "pattern": "^(workflows|routes|workflow-history|adw-monitor|queue|system-status|webhook-status|alerts"
    "|adw-state:[A-Za-z0-9_.-]{1,64})$",
}


def _object(properties: dict[str, Schema], *, required: list[str] | None = None, closed: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


# Items a cluster view serves name the node that holds them (absent on a single node).
CLUSTER_FIELDS: dict[str, Schema] = {
    "node": {**TEXT, "description": "cluster view only: the node that holds this item"},
    "node_status": {
        "enum": ["unreachable", "stale"],
        "description": (
            "cluster view only: unreachable, the node's record expired; stale, the node is alive but in trouble"
            " (writes refused, record late, two runs under its name): either way this is its last known state"
        ),
    },
}


def _item(properties: dict[str, Schema], *, required: list[str] | None = None) -> Schema:
    """Return an item schema: ``properties`` required (or ``required``), plus the cluster view's fields."""
    return _object({**properties, **CLUSTER_FIELDS}, required=list(properties) if required is None else required)


def _counts() -> Schema:
    return {"type": "object", "additionalProperties": COUNT}


WORKFLOW_EXECUTION = _item({"adw_id": ADW_ID, "issue_number": {"type": "integer"}, "phase": TEXT, "github_url": TEXT})
ROUTE = _object(
    {
        "path": TEXT,
        "method": TEXT,
        "name": TEXT,
        "handler": TEXT,
        "summary": TEXT,
        "description": TEXT,
        "tags": {"type": "array", "items": TEXT},
    }
)
ANALYTICS = _object(
    {
        name: _counts() if name.startswith("workflows_by_") else COUNT if isinstance(value, int) else NUMBER
        for name, value in empty_analytics().items()
    }
)
HISTORY = _object(
    {
        "workflows": {
            "type": "array",
            "items": {
                "type": "object",
                "description": "a workflow_history row: every column, JSON columns parsed",
                "properties": CLUSTER_FIELDS,
            },
        },
        "total_count": COUNT,
        "analytics": ANALYTICS,
    }
)
ADW_STATE = {
    "type": "object",
    "description": "the ADW's adw_state.json as written ({} before it exists), with adw_id",
    "properties": {"adw_id": ADW_ID, **CLUSTER_FIELDS},
}
MONITOR_ITEM = _item(
    {
        "adw_id": ADW_ID,
        "issue_number": {"type": ["integer", "null"]},
        "pr_number": {"type": ["integer", "null"]},
        "issue_class": TEXT,
        "title": TEXT,
        "status": {"enum": ["running", "completed", "failed", "paused", "queued"]},
        "current_phase": MAYBE_TEXT,
        "phase_progress": {"type": "number", "minimum": 0, "maximum": 100},
        "workflow_template": TEXT,
        "start_time": MAYBE_TEXT,
        "end_time": MAYBE_TEXT,
        "duration_seconds": MAYBE_NUMBER,
        "github_url": MAYBE_TEXT,
        "worktree_path": MAYBE_TEXT,
        "current_cost": MAYBE_NUMBER,
        "estimated_cost_total": MAYBE_NUMBER,
        "error_count": COUNT,
        "last_error": MAYBE_TEXT,
        "is_process_active": {"type": "boolean"},
        "pids": {"type": "array", "items": {"type": "integer"}, "maxItems": 5},
        "last_activity": {**MAYBE_TEXT, "description": "newest modification time of its files (ISO, UTC)"},
        "stalled": {"type": "boolean", "description": "says running: no process, no activity for stall_after"},
        "stalled_seconds": {**MAYBE_NUMBER, "description": "while stalled: seconds since its last activity"},
        "phases_completed": {"type": "array", "items": TEXT},
        "total_phases": COUNT,
    }
)
MONITOR = _object(
    {
        "workflows": {"type": "array", "items": MONITOR_ITEM},
        "summary": _object({k: COUNT for k in ("total", "running", "completed", "failed", "paused", "stalled")}),
        "last_updated": TIME,
    }
)
QUEUE_ITEM = _item(
    {
        "queue_id": {"description": "the row's queue_id"},
        "phase": {**TEXT, "description": "phase_data's title, else phase_number as text"},
        "status": {"description": "queued, ready, running, completed, blocked, failed (as the row holds it)"},
        "metadata": {"type": "object", "description": "phase_data, parsed"},
    },
    # Every column of the row comes as it is; a database with other columns lacks queue_id or status.
    required=["phase", "metadata"],
)
QUEUE = _object({"phases": {"type": "array", "items": QUEUE_ITEM}, "total": COUNT, "paused": {"type": "boolean"}})
SERVICE = _object(
    {
        "name": TEXT,
        "status": {"enum": ["healthy", "degraded", "error", "unknown"], "description": "unknown: checking"},
        "uptime_seconds": NUMBER,
        "uptime_human": TEXT,
        "message": MAYBE_TEXT,
        "details": {"type": ["object", "null"]},
    }
)
SYSTEM_STATUS = _object(
    {
        "overall_status": {"enum": ["healthy", "degraded", "error", "unknown"]},
        "timestamp": TIME,
        "services": {"type": "object", "additionalProperties": SERVICE},
        "summary": _object({"healthy_services": COUNT, "total_services": COUNT, "health_percentage": NUMBER}),
    }
)
WEBHOOK_STATUS = {
    "type": "object",
    "description": "the webhook service's JSON ({status, uptime, stats, recent_failures, last_successful}), "
    'or {"status": "error" | "unknown", "message"} when it cannot be read',
    "properties": {"status": TEXT, "message": TEXT},
    "required": ["status"],
}
ALERT_SEVERITIES = ("error", "warning")
ALERT = _object(
    {
        "id": {**TEXT, "description": "rule:subject, stable across reads and restarts"},
        "rule": {"enum": list(ALERT_RULES)},
        "subject": {**TEXT, "description": "the ADW id, the status entry's name, or the queue_id"},
        "severity": {"enum": list(ALERT_SEVERITIES)},
        "title": TEXT,
        "text": TEXT,
        "opened_at": TIME,
        "resolved_at": {"type": ["string", "null"], "description": "null while open"},
        "adw_id": MAYBE_TEXT,
        "github_url": MAYBE_TEXT,
        "link": {**TEXT, "description": "the dashboard: #/adw/{adw_id}, or #/ (system status)"},
        "acknowledged": {"type": "boolean", "description": "open, but out of the bell's count"},
    },
    closed=True,
)
ALERTS = _object(
    {
        "open": {"type": "array", "items": ALERT, "description": "newest first"},
        "recent": {"type": "array", "items": ALERT, "description": "resolved lately, newest first"},
    }
)

# Each channel's data schema, by the name its spec gives it (``ChannelSpec.schema``).
DATA_SCHEMAS: dict[str, Schema] = {
    "WorkflowExecutionList": {"type": "array", "items": WORKFLOW_EXECUTION},
    "RouteList": {"type": "array", "items": ROUTE},
    "WorkflowHistory": HISTORY,
    "AdwState": ADW_STATE,
    "AdwMonitor": MONITOR,
    "Queue": QUEUE,
    "SystemStatus": SYSTEM_STATUS,
    "WebhookStatus": WEBHOOK_STATUS,
    "Alerts": ALERTS,
}
NAMES = {family: spec.schema for family, spec in SPECS.items()}
DATA: dict[str, Schema] = {family: DATA_SCHEMAS[spec.schema] for family, spec in SPECS.items()}


def update_message(family: str) -> Schema:
    """Return the schema of a whole ``{family}`` message (``data`` by reference to its schema)."""
    spec = SPECS[family]
    properties: dict[str, Schema] = {
        "type": {"const": spec.type},
        "channel": {"type": "string", "pattern": f"^{family}:[A-Za-z0-9_.-]{{1,64}}$"}
        if spec.param
        else {"const": family},
        "data": {"$ref": f"#/components/schemas/{NAMES[family]}"},
        "seq": {**COUNT, "description": "+1 per change of the channel; a refresh keeps it"},
        "timestamp": TIME,
        "epoch": {**TEXT, "description": "of the event log; in a socket's first frame of each channel"},
        "recovered": {"type": "boolean", "description": "in the first frame of a resume (see the resume rules)"},
    }
    if spec.param:
        properties[spec.param] = ADW_ID
    return _object(properties, required=["type", "channel", "data", "seq", "timestamp"], closed=True)


def patch_message(family: str) -> Schema:
    """Return the schema of a ``{family}`` merge-patch message (``/ws`` with patches)."""
    return _object(
        {
            "type": {"const": SPECS[family].type},
            "channel": {"const": family},
            "seq": COUNT,
            "base_seq": {**COUNT, "description": "the seq the patch applies to; not yours: subscribe again"},
            "patch": {
                "type": "object",
                "description": "RFC 7396 merge patch of the data in keyed form: lists of items with ids as "
                '{"items": {id: item without null members}, "order": [id, ...], "nulls": {id: [key path, ...]}}',
            },
            "timestamp": TIME,
        },
        closed=True,
    )


CONTROL: dict[str, Schema] = {
    "Heartbeat": _object({"type": {"const": "heartbeat"}, "timestamp": TIME}, closed=True),
    "Pong": _object(
        {"type": {"const": "pong"}, "timestamp": {"description": "the ping's timestamp, echoed (null if odd)"}},
        closed=True,
    ),
    "Subscribed": _object(
        {"type": {"const": "subscribed"}, "channels": {"type": "array", "items": CHANNEL}, "epoch": TEXT}, closed=True
    ),
    "Unsubscribed": _object(
        {"type": {"const": "unsubscribed"}, "channels": {"type": "array", "items": CHANNEL}}, closed=True
    ),
    "Error": _object(
        {
            "type": {"const": "error"},
            "channel": {**TEXT, "description": "the offending name as sent (first 100 characters)"},
            "detail": TEXT,
        },
        required=["type", "detail"],
        closed=True,
    ),
}
CLIENT: dict[str, Schema] = {
    "Subscribe": _object(
        {
            "type": {"const": "subscribe"},
            "channels": {"type": "array", "items": CHANNEL},
            "since": {"type": "object", "additionalProperties": COUNT, "description": "channel -> last seq held"},
            "epoch": TEXT,
            "patches": {"type": "boolean", "default": False},
        },
        required=["type", "channels"],
    ),
    "Unsubscribe": _object({"type": {"const": "unsubscribe"}, "channels": {"type": "array", "items": CHANNEL}}),
    "Ping": _object({"type": {"const": "ping"}, "timestamp": {}}, required=["type"]),
    "ClientReady": _object({"type": {"const": "client_ready"}}, required=["type"]),
}
ERROR_DETAIL = _object({"detail": TEXT})


def schema_name(message: Any) -> str | None:
    """Return the name of the message schema ``message`` must match (None if it is none of them)."""
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    for family, spec in SPECS.items():
        if spec.type == kind:
            return f"{NAMES[family]}{'Patch' if 'patch' in message else 'Update'}"
    names = {"heartbeat": "Heartbeat", "pong": "Pong", "subscribed": "Subscribed", "unsubscribed": "Unsubscribed"}
    names["error"] = "Error"
    return names.get(kind) if isinstance(kind, str) else None


def components() -> dict[str, Schema]:
    """Return every schema by name (data, messages, client messages): ``components.schemas``."""
    schemas: dict[str, Schema] = {NAMES[f]: DATA[f] for f in DATA}
    schemas.update(
        {
            "WorkflowExecution": WORKFLOW_EXECUTION,
            "Route": ROUTE,
            "AdwWorkflowStatus": MONITOR_ITEM,
            "PhaseQueueItem": QUEUE_ITEM,
            "ServiceHealth": SERVICE,
            "ErrorDetail": ERROR_DETAIL,
        }
    )
    for family in SPECS:
        schemas[f"{NAMES[family]}Update"] = update_message(family)
        if SPECS[family].keyed is not None:
            schemas[f"{NAMES[family]}Patch"] = patch_message(family)
    schemas.update(CONTROL)
    schemas.update(CLIENT)
    return schemas
