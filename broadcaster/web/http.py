"""HTTP fallback: each channel's current data over GET, with an ETag and 304; the events API.

These handlers read what the hub (or, for paging through history, the last database read)
already holds. They never read the sources, so polling clients cost no I/O.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..channels.db_data import HISTORY_FILTERS, HISTORY_LIMIT, filter_history
from ..channels.service_data import route
from ..channels.specs import SPECS, adw_state_channel, spec_of, validate_adw_id
from ..core.clock import iso_utc
from ..core.events import Event
from ..core.protocol import parse_count
from ..core.snapshot import digest
from ..errors import InvalidAdwId
from .keys import EVENT_LOG, FEEDS, HUB
from .problems import problem

HTTP_PREFIXES = ("/api/v1", "/api")
MAX_LIMIT = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_answer(request: web.Request, body: Any, tag: str) -> web.Response:
    """Answer ``body`` as JSON with ``ETag: "tag"``, or 304 if the client already has it."""
    etag = f'"{tag}"'
    if _matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json",
        headers={"ETag": etag, "Cache-Control": "no-cache"},
    )


def fresh_tag(event: Event) -> str:
    """Return the ETag of a channel answer: its digest, and for clock-carrying channels the second too.

    The digest leaves clock values out; a browser revalidating with it would get 304 and keep an
    old uptime, so those channels' tags move each second.
    """
    if spec_of(event.channel).clock_values:
        return f"{event.digest}-{int(time.time())}"
    return event.digest


def _matches(header: str, etag: str) -> bool:
    candidates = [c.strip().removeprefix("W/") for c in header.split(",") if c.strip()]
    return "*" in candidates or etag in candidates


def channel_answer(channel: str, shape: Callable[[Any], Any] | None = None) -> Handler:
    """Return a handler answering ``channel``'s current data (reshaped by ``shape`` if given)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        event = request.app[HUB].fresh_current(channel)
        # The channel's digest identifies what the body is derived from: no hashing per request.
        return json_answer(request, event.data if shape is None else shape(event.data), fresh_tag(event))

    return handler


async def adw_state_view(request: web.Request) -> web.StreamResponse:
    """Answer one ADW's current state (``{}`` if it has none); bad ids get 400 before any lookup."""
    try:
        channel = adw_state_channel(validate_adw_id(request.match_info["adw_id"]))
    except InvalidAdwId as exc:
        return problem(400, str(exc))
    event = request.app[HUB].fresh_current(channel)
    return json_answer(request, event.data, fresh_tag(event))


async def history_view(request: web.Request) -> web.StreamResponse:
    """Answer workflow history; with query parameters, filter and page the last rows read."""
    query = request.query
    unknown = set(query) - {"limit", "offset", "search", "sort_by", "sort_order", *HISTORY_FILTERS}
    if unknown:
        return _bad(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    limit, offset = parse_count(query.get("limit", str(HISTORY_LIMIT))), parse_count(query.get("offset", "0"))
    if limit is None or offset is None:
        return _bad("limit and offset must be non-negative integers")
    if not 1 <= limit <= MAX_LIMIT:
        return _bad(f"limit must be 1-{MAX_LIMIT} and offset >= 0")
    order = query.get("sort_order", "desc").lower()
    if order not in ("asc", "desc"):
        return _bad("sort_order must be asc or desc")
    rows = request.app[FEEDS].history_rows
    sort_by = query.get("sort_by", "")
    if sort_by and rows and sort_by not in rows[0]:
        return _bad(f"sort_by: no column {sort_by!r} in workflow_history")
    filters = {k: query[k] for k in HISTORY_FILTERS if query.get(k)}
    if limit == HISTORY_LIMIT and offset == 0 and order == "desc" and not (filters or sort_by or query.get("search")):
        event = request.app[HUB].fresh_current("workflow-history")  # exactly what the WebSocket sends
        return json_answer(request, event.data, fresh_tag(event))
    current = request.app[HUB].current("workflow-history").data
    body = filter_history(
        rows,
        limit=limit,
        offset=offset,
        filters=filters,
        search=query.get("search", ""),
        sort_by=sort_by,
        descending=order == "desc",
        over_all=current.get("analytics") if isinstance(current, dict) else None,  # computed once per read
    )
    return json_answer(request, body, digest(body, SPECS["workflow-history"].volatile))


EVENTS_LIMIT = 100


async def events_view(request: web.Request) -> web.StreamResponse:
    """Answer stored events oldest first: one channel's after a seq, or all channels' after a log id."""
    query = request.query
    unknown = set(query) - {"channel", "since", "limit"}
    if unknown:
        return _bad(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    channel = query.get("channel") or None
    if channel is not None:
        family, _, adw_id = channel.partition(":")
        if family not in SPECS or bool(SPECS[family].param) != bool(adw_id):
            return _bad(f"no channel {channel[:80]!r} (e.g. queue, adw-state:77c90e61)")
        if adw_id:
            try:
                validate_adw_id(adw_id)
            except InvalidAdwId as exc:
                return _bad(str(exc))
    since, limit = parse_count(query.get("since", "0")), parse_count(query.get("limit", str(EVENTS_LIMIT)))
    if since is None or limit is None:
        return _bad("since and limit must be non-negative integers (at most 18 digits)")
    if not 1 <= limit <= MAX_LIMIT:
        return _bad(f"limit must be 1-{MAX_LIMIT}")
    try:
        rows = await request.app[EVENT_LOG].events(channel, since, limit)
    except sqlite3.Error as exc:
        return problem(503, f"the event log cannot be read: {exc}")
    events = [
        {
            "id": i,
            "channel": e.channel,
            "seq": e.seq,
            "type": e.type,
            "data": e.data,
            "digest": e.digest,
            "timestamp": iso_utc(e.timestamp),
        }
        for i, e in rows
    ]
    last = (events[-1]["seq"] if channel else events[-1]["id"]) if events else since
    body = {"epoch": request.app[HUB].epoch, "channel": channel, "since": since, "events": events, "next": last}
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), content_type="application/json")


async def channels_view(request: web.Request) -> web.StreamResponse:
    """Answer every channel with its current seq and digest (what a resuming client compares with)."""
    hub, log = request.app[HUB], request.app[EVENT_LOG]
    channels = [
        {
            "channel": e.channel,
            "type": e.type,
            "seq": e.seq,
            "digest": e.digest,
            "timestamp": iso_utc(e.timestamp),
            "subscribers": hub.subscriber_count(e.channel),
            "contiguous_from": log.contiguous_from(e.channel),
        }
        for e in sorted(hub.channels(), key=lambda e: e.channel)
    ]
    return web.json_response({"epoch": hub.epoch, "channels": channels})


def _bad(message: str) -> web.Response:
    return problem(400, message)


FALLBACK = ("HTTP fallback: the same data as the WebSocket channel, with an ETag", ["http"])
EVENT_LOG_ROUTE = ("The event log", ["events"])


def add_http_routes(app: web.Application) -> list[dict[str, Any]]:
    """Serve each channel's HTTP fallback and the event log API under ``/api/v1`` and ``/api``; return the Routes."""
    views: list[tuple[str, Handler, str, tuple[str, list[str]]]] = [
        ("/workflows", channel_answer("workflows"), "Active workflows", FALLBACK),
        (
            "/routes",
            channel_answer("routes", lambda d: {"routes": d, "total": len(d)}),
            "Routes, as {routes, total}",
            FALLBACK,
        ),
        (
            "/workflow-history",
            history_view,
            "Workflow history; limit, offset, status, model, template, search, sort_by, sort_order",
            FALLBACK,
        ),
        ("/adw-monitor", channel_answer("adw-monitor"), "Every ADW's status and a summary", FALLBACK),
        ("/queue", channel_answer("queue"), "The phase queue", FALLBACK),
        (
            "/queue/config",
            channel_answer("queue", lambda d: {"paused": d["paused"]}),
            "Whether the queue is paused",
            FALLBACK,
        ),
        ("/system-status", channel_answer("system-status"), "Health of each source and check", FALLBACK),
        ("/webhook-status", channel_answer("webhook-status"), "The webhook service's status", FALLBACK),
        ("/alerts", channel_answer("alerts"), "Open and recently resolved alerts", FALLBACK),
        ("/adw-state/{adw_id}", adw_state_view, "One ADW's state", FALLBACK),
        (
            "/events",
            events_view,
            "Stored events: channel, since (seq, or log id without channel), limit",
            EVENT_LOG_ROUTE,
        ),
        ("/channels", channels_view, "Every channel's current seq and digest, and the log's epoch", EVENT_LOG_ROUTE),
    ]
    routes = []
    for prefix in HTTP_PREFIXES:
        for path, handler, summary, (description, tags) in views:
            app.router.add_get(prefix + path, handler, allow_head=False)
            name = path.strip("/").split("/{")[0].replace("/", "_").replace("-", "_")
            routes.append(route(prefix + path, "GET", name, summary, description, tags))
    return routes
