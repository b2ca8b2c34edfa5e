"""The protocol described for tools: AsyncAPI 3.0 (``/asyncapi.json``) and OpenAPI 3.1 (``OWN_OPENAPI``).

The OpenAPI document always has a path of its own; ``/openapi.json`` serves it too unless an
upstream is configured, whose own ``/openapi.json`` (and ``/docs``, ``/redoc``) then answer there.

Both are built from ``schemas`` and the channel table, so they describe what the code sends; the
tests validate every message and HTTP answer they receive against them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .._version import __version__
from ..channels.db_data import HISTORY_FILTERS
from ..channels.schemas import COUNT, NAMES, TEXT, TIME, Schema, components
from ..channels.service_data import route
from ..channels.specs import SPECS
from .http import HTTP_PREFIXES
from .static_files import FILES, content_type

OWN_OPENAPI = "/broadcaster/openapi.json"  # this service's OpenAPI document, whatever the upstream serves
RESUME = """\
Resume: every channel frame has a seq (+1 per change of that channel) and a socket's first frame
of each channel carries the event log's epoch. A client that reconnects sends what it has: on a
single path `?since=SEQ&epoch=EPOCH`; on /ws `since` per channel (`?since=queue:17,adw-monitor:4`
or `{"type": "subscribe", "since": {"queue": 17}, "epoch": "..."}`). Same epoch and nothing
missed: nothing is sent. Same epoch and the log still holds every event after since: the newest
state, marked `recovered: true` (each message carries the whole state, so the newest covers all
missed). Anything else (another epoch, a seq the log no longer continues, a seq from the
future): the current state with `recovered: false`."""

CLOSE_CODES = """\
Close codes: 1001 the service is shutting down; 1008 message flood (more than a burst of 60, then
20 per second); 1009 a frame over [server] max_message_size. A client that cannot keep up (its
socket over 64 KiB unsent for [server] write_timeout) or leaves a protocol ping unanswered is
dropped with a TCP reset, not a close frame."""

PATCHES = """\
Patches (/ws, opt-in with `"patches": true` or `&patches=1`): after a whole first message, list
channels (workflows, routes, workflow-history, adw-monitor, queue) may come as
`{"type", "channel", "seq", "base_seq", "patch"}`: an RFC 7396 merge patch from the data at
base_seq, in keyed form: each list of items with an id as
`{"items": {id: item without its null members}, "order": [ids], "nulls": {id: [key path, ...]}}`
(ids: adw_id, queue_id, "METHOD path"); back in list form each item gets a null at each of its
paths. If base_seq is not the last seq you hold, subscribe to the channel again: the answer is
whole. A change a merge patch cannot carry exactly (another field set to null) comes whole."""


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _camel(family: str) -> str:
    head, *rest = family.split("-")
    return head + "".join(part.title() for part in rest)


def asyncapi(prefixes: tuple[str, ...]) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of every WebSocket path, ``/ws`` included."""
    messages: dict[str, Any] = {}
    for name in components():
        messages[name] = {"name": name, "payload": _ref(name)}
    channels, operations = _channel_docs()
    channels["mux"], operations["send_mux"], operations["receive_mux"] = _mux_doc()
    for key in list(channels):
        if key != "mux":
            operations[f"receive_{key}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "description": "Clients mostly listen: ping gets pong (the bare text ping gets pong), "
                "anything else well-formed is ignored.",
                "messages": [],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "adw-broadcaster",
            "version": __version__,
            "description": "Live state of AI developer-workflow agents over WebSockets. One JSON text frame "
            "per message. A quiet socket gets a heartbeat every [server] heartbeat_interval.\n\n"
            + "\n\n".join((RESUME, CLOSE_CODES, PATCHES)),
            "externalDocs": {"description": "The HTTP side (OpenAPI 3.1)", "url": OWN_OPENAPI},
        },
        "defaultContentType": "application/json",
        "servers": {
            (prefix.strip("/").replace("/", "_") or "root"): {
                "host": "127.0.0.1:8002",
                "protocol": "ws",
                "pathname": prefix or "/",
                "description": f"paths under {prefix or '/'}",
            }
            for prefix in prefixes
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components(), "messages": messages},
    }


def _channel_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the AsyncAPI channel and send operation of each single-channel path."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    resume_query = {
        "type": "object",
        "properties": {"since": {**TEXT, "description": "the last seq held"}, "epoch": TEXT},
    }
    for family, spec in SPECS.items():
        key = _camel(family)
        own = {"update": {"$ref": f"#/components/messages/{NAMES[family]}Update"}}
        own.update({c.lower(): {"$ref": f"#/components/messages/{c}"} for c in ("Heartbeat", "Pong")})
        channel: dict[str, Any] = {
            "address": f"/ws{spec.path}",
            "title": f"{family} ({spec.type})",
            "description": "The current state on connect, then every change (at most one per "
            "[broadcast] min_interval per channel). Also served under each server's pathname.",
            "messages": own,
            "bindings": {"ws": {"query": resume_query}},
        }
        if spec.param:
            channel["parameters"] = {spec.param: {"description": "1-64 letters, digits, '_', '.', '-'"}}
        channels[key] = channel
        operations[f"send_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in own],
        }
    return channels, operations


def _mux_doc() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return the AsyncAPI channel of ``/ws`` and its send and receive operations."""
    server_messages = [f"{NAMES[f]}Update" for f in SPECS] + [f"{NAMES[f]}Patch" for f in SPECS if SPECS[f].keyed]
    server_messages += ["Subscribed", "Unsubscribed", "Error", "Heartbeat", "Pong"]
    client_messages = ["Subscribe", "Unsubscribe", "Ping", "ClientReady"]
    channel = {
        "address": "/ws",
        "title": "the multiplexed socket",
        "description": "Any set of channels on one socket: subscribe by query "
        "(?channels=queue,adw-state:77c90e61&since=queue:17&epoch=...&patches=1) or by message. At most "
        "[server] max_subscriptions channels per socket. A bad channel, since or message gets an Error "
        "frame; the other subscriptions keep flowing. Every channel frame names its channel.\n\n" + PATCHES,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in server_messages + client_messages},
        "bindings": {
            "ws": {
                "query": {
                    "type": "object",
                    "properties": {
                        "channels": {**TEXT, "description": "comma-separated channel names"},
                        "since": {**TEXT, "description": "comma-separated channel:seq pairs"},
                        "epoch": TEXT,
                        "patches": {"enum": ["0", "1", "true", "false"]},
                    },
                }
            }
        },
    }
    send = {
        "action": "send",
        "channel": {"$ref": "#/channels/mux"},
        "messages": [{"$ref": f"#/channels/mux/messages/{m}"} for m in server_messages],
    }
    receive = {
        "action": "receive",
        "channel": {"$ref": "#/channels/mux"},
        "messages": [{"$ref": f"#/channels/mux/messages/{m}"} for m in client_messages],
    }
    return channel, send, receive


def _get(
    summary: str, body: Schema | None, *, etag: bool = False, params: list[Any] | None = None, method: str = "get"
) -> dict[str, Any]:
    """Return a path item with one operation (a GET unless ``method`` says otherwise)."""
    responses: dict[str, Any] = {"default": {"description": "an error", "content": _json(_ref("ErrorDetail"))}}
    if body is not None:
        responses["200"] = {"description": "OK", "content": _json(body)}
    if etag:
        responses["304"] = {"description": "unchanged since the If-None-Match ETag"}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = params
    return {method: operation}


def _ack_paths() -> dict[str, Any]:
    """Return the alerts' acknowledgement paths (``broadcaster.alerts``), under each HTTP prefix."""
    acked = {
        "type": "object",
        "properties": {"acknowledged": {"type": "array", "items": TEXT, "description": "the ids newly acknowledged"}},
        "required": ["acknowledged"],
    }
    one = {"name": "alert_id", "in": "path", "required": True, "schema": TEXT, "description": "rule:subject"}
    paths: dict[str, Any] = {}
    for prefix in HTTP_PREFIXES:
        for path, summary, params in (
            ("/alerts/{alert_id}/ack", "Acknowledge one open alert (404 if it is not open)", [one]),
            ("/alerts/ack", "Acknowledge every open alert", []),
        ):
            paths[prefix + path] = _get(summary, acked, params=params, method="post")
    return paths


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _query(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


ADW_PARAM = {"name": "adw_id", "in": "path", "required": True, "schema": {"type": "string"}}
EVENT = {
    "type": "object",
    "properties": {
        "id": COUNT,
        "channel": TEXT,
        "seq": COUNT,
        "type": TEXT,
        "data": {},
        "digest": TEXT,
        "timestamp": TIME,
    },
    "required": ["id", "channel", "seq", "type", "data", "digest", "timestamp"],
}
EVENTS_PAGE = {
    "type": "object",
    "properties": {
        "epoch": TEXT,
        "channel": {"type": ["string", "null"]},
        "since": COUNT,
        "next": {**COUNT, "description": "since for the next page"},
        "events": {"type": "array", "items": EVENT},
    },
    "required": ["epoch", "channel", "since", "next", "events"],
}
CHANNELS = {
    "type": "object",
    "properties": {
        "epoch": TEXT,
        "channels": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "channel": TEXT,
                    "type": TEXT,
                    "seq": COUNT,
                    "digest": TEXT,
                    "timestamp": TIME,
                    "subscribers": COUNT,
                    "contiguous_from": COUNT,
                },
                "required": ["channel", "type", "seq", "digest", "timestamp", "subscribers", "contiguous_from"],
            },
        },
    },
    "required": ["epoch", "channels"],
}


def openapi(prefixes: tuple[str, ...], *, upstream: bool = False) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the HTTP fallback, the events API and the shipped files.

    ``upstream``: ``/openapi.json`` is the upstream's, not a path of this document.
    """
    paths: dict[str, Any] = {}
    fallback = _fallback_paths()
    for prefix in HTTP_PREFIXES:
        for path, item in fallback.items():
            paths[prefix + path] = item
    paths.update(_own_paths(prefixes))
    paths.update(_ack_paths())
    for path in _openapi_paths(upstream):
        paths[path] = _get("This document", {"type": "object"})
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "adw-broadcaster",
            "version": __version__,
            "description": "The HTTP fallback of every channel (the same data as its WebSocket, with an "
            'ETag), the event log, and the shipped files. Errors answer {"detail": "..."}.',
        },
        "paths": paths,
        # With [server] token set, every request but /healthz carries it (a 401 otherwise).
        "security": [{"bearer": []}, {"query_token": []}, {}],
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }


def _fallback_paths() -> dict[str, Any]:
    """Return the HTTP fallback's paths (under each of /api/v1 and /api): channels, events, channels' seqs."""
    history_params = [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _query("offset", COUNT),
        _query("search", TEXT),
        _query("sort_by", TEXT, "a workflow_history column"),
        _query("sort_order", {"enum": ["asc", "desc"]}),
        *(_query(name, TEXT, f"only rows whose {column} is this") for name, column in HISTORY_FILTERS.items()),
    ]
    return {
        "/workflows": _get("Active workflows", _ref("WorkflowExecutionList"), etag=True),
        "/routes": _get(
            "Routes",
            {
                "type": "object",
                "properties": {"routes": _ref("RouteList"), "total": COUNT},
                "required": ["routes", "total"],
            },
            etag=True,
        ),
        "/workflow-history": _get("Workflow history", _ref("WorkflowHistory"), etag=True, params=history_params),
        "/adw-monitor": _get("Every ADW's status and a summary", _ref("AdwMonitor"), etag=True),
        "/queue": _get("The phase queue", _ref("Queue"), etag=True),
        "/queue/config": _get(
            "Whether the queue is paused",
            {"type": "object", "properties": {"paused": {"type": "boolean"}}, "required": ["paused"]},
            etag=True,
        ),
        "/system-status": _get("Health of each source and check", _ref("SystemStatus"), etag=True),
        "/webhook-status": _get("The webhook service's status", _ref("WebhookStatus"), etag=True),
        "/alerts": _get("Open and recently resolved alerts", _ref("Alerts"), etag=True),
        "/adw-state/{adw_id}": _get("One ADW's state", _ref("AdwState"), etag=True, params=[ADW_PARAM]),
        "/events": _get(
            "Stored events, oldest first",
            EVENTS_PAGE,
            params=[
                _query("channel", TEXT, "with it, since is a seq of that channel; without, a log id"),
                _query("since", COUNT),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ],
        ),
        "/channels": _get("Every channel's current seq and digest, and the log's epoch", CHANNELS),
    }


def _own_paths(prefixes: tuple[str, ...]) -> dict[str, Any]:
    """Return the WebSocket upgrade paths, the shipped files, /healthz, /metrics and the documents."""
    paths: dict[str, Any] = {}
    upgrade = "A WebSocket upgrade (see /asyncapi.json); a plain GET is refused"
    for prefix in prefixes:
        for family in SPECS:
            spec = SPECS[family]
            paths[f"{prefix}/ws{spec.path}"] = _get(upgrade, None, params=[ADW_PARAM] if spec.param else None)
        paths[f"{prefix}/ws"] = _get(upgrade, None)
    for path, (name, summary) in FILES.items():
        paths[path] = _get(summary, None, etag=True)
        paths[path]["get"]["responses"]["200"] = {
            "description": "OK",
            "content": {content_type(name): {"schema": TEXT}},
        }
    paths["/healthz"] = _get(
        "Liveness: 200 while the event loop turns and the pipeline runs, else 503 with the reason (no token)",
        {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]},
    )
    paths["/healthz"]["get"]["security"] = []
    paths["/metrics"] = _get("Prometheus metrics (the text format; adw_broadcaster_* names)", None)
    paths["/metrics"]["get"]["responses"]["200"] = {"description": "OK", "content": {"text/plain": {"schema": TEXT}}}
    paths["/asyncapi.json"] = _get("This service's WebSocket protocol (AsyncAPI 3.0)", {"type": "object"})
    return paths


def _openapi_paths(upstream: bool) -> tuple[str, ...]:
    """Return where this service serves its OpenAPI document: its own path, and ``/openapi.json`` alone."""
    return (OWN_OPENAPI,) if upstream else (OWN_OPENAPI, "/openapi.json")


def add_doc_routes(app: web.Application, prefixes: tuple[str, ...], *, upstream: bool = False) -> list[dict[str, Any]]:
    """Serve ``/asyncapi.json`` and the OpenAPI document (built once); return their Routes.

    ``upstream``: leave ``/openapi.json`` to the upstream (its own document answers there).
    """
    document = openapi(prefixes, upstream=upstream)
    documents = {"/asyncapi.json": asyncapi(prefixes), **dict.fromkeys(_openapi_paths(upstream), document)}
    routes = []
    for path, document in documents.items():

        async def handler(request: web.Request, document: dict[str, Any] = document) -> web.StreamResponse:
            return web.json_response(document)

        app.router.add_get(path, handler, allow_head=False)
        name = path.strip("/").replace(".", "_")
        routes.append(route(path, "GET", name, f"The protocol document {path}", "For tools", ["docs"]))
    return routes
