"""WebSocket endpoints: one channel per socket, snapshot on connect, then the channel's changes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..channels.service_data import route
from ..channels.specs import SPECS, adw_state_channel, validate_adw_id
from ..core.client import Client, Socket, reset
from ..core.events import EventLog
from ..core.hub import Hub
from ..core.protocol import parse_count, reply_to
from ..errors import InvalidAdwId
from .keys import CONFIG, COUNTERS, EVENT_LOG, HUB
from .limits import LIMITS

logger = logging.getLogger(__name__)

# Inbound flood limit: a burst of FLOOD_BURST messages, then FLOOD_RATE per second.
FLOOD_BURST = 60.0
FLOOD_RATE = 20.0
CLOSE_TIMEOUT = 1.0  # seconds to wait for the peer's close frame


class _TokenBucket:
    def __init__(self, burst: float, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst, self._rate, self._clock = burst, rate, clock
        self._tokens, self._at = burst, clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def channel_handler(channel_of: Callable[[web.Request], str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Return a handler that serves the channel ``channel_of(request)`` names."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            channel = channel_of(request)
        except InvalidAdwId as exc:  # refused before anything touches the filesystem
            raise web.HTTPBadRequest(text=str(exc)) from None
        return await serve(request, channel)

    return handler


def adw_state_of(request: web.Request) -> str:
    """Return the ``adw-state:{id}`` channel of a request path, or raise InvalidAdwId."""
    return adw_state_channel(validate_adw_id(request.match_info["adw_id"]))


def resume_point(request: web.Request) -> tuple[int, str] | None:
    """Return ``(since, epoch)`` if the client asked to resume; raise 400 if it asked wrongly."""
    since = request.query.get("since")
    if since is None:
        return None
    seq = parse_count(since)
    if seq is None:
        raise web.HTTPBadRequest(text=f"since must be a non-negative integer (a seq), got {since[:40]!r}")
    return seq, request.query.get("epoch", "")


def greet(
    hub: Hub,
    log: EventLog,
    client: Client,
    channel: str,
    resume: tuple[int, str] | None,
    *,
    patches: bool = False,
) -> None:
    """Subscribe ``client``, first sending what it needs to be current (nothing, if it is).

    A resuming client whose epoch matches and whose seq the log still continues from gets the
    newest state marked ``recovered: true`` (every channel carries its full state, so the newest
    event covers all it missed); any other resume gets the snapshot with ``recovered: false``.
    """
    if resume is None:
        hub.attach(client, channel, patches=patches)
        return
    since, epoch = resume
    current = hub.current(channel).seq
    same_history = epoch == hub.epoch
    if same_history and since == current:
        hub.attach(client, channel, send_current=False, patches=patches)  # up to date: nothing extra
        return
    recovered = same_history and since < current and log.contiguous_from(channel) <= since + 1
    hub.attach(client, channel, recovered=recovered, patches=patches)


async def serve(request: web.Request, channel: str) -> web.StreamResponse:
    """Upgrade ``request`` and stream ``channel`` to it until either side closes."""
    resume = resume_point(request)
    hub, log = request.app[HUB], request.app[EVENT_LOG]

    def on_text(client: Client, text: str) -> None:
        reply = reply_to(text)
        if reply is not None:
            client.post_control(reply)

    return await run_socket(request, channel, lambda client: greet(hub, log, client, channel, resume), on_text)


async def run_socket(
    request: web.Request,
    label: str,
    start: Callable[[Client], None],
    on_text: Callable[[Client, str], None],
    on_binary: Callable[[Client], None] | None = None,
) -> web.StreamResponse:
    """Upgrade ``request``, call ``start`` with its Client, then hand it each message until either side closes.

    The rules every socket shares: the flood limit (close 1008), the inbound size limit (1009,
    from aiohttp), pongs to pings, and a reset of a connection that ends with unsent bytes.
    ``label`` names the socket in the log.
    """
    limits = request.app[LIMITS]
    address = request.remote or ""
    refusal = limits.admit(address)
    if refusal is not None:
        return refusal
    try:
        return await _run(request, label, start, on_text, on_binary)
    finally:
        limits.release(address)


async def _run(
    request: web.Request,
    label: str,
    start: Callable[[Client], None],
    on_text: Callable[[Client, str], None],
    on_binary: Callable[[Client], None] | None,
) -> web.WebSocketResponse:
    server = request.app[CONFIG].server
    hub = request.app[HUB]
    ws = Socket(
        # Protocol pings come from the hub's sweep (one timer for all clients); a peer that does not
        # answer is aborted there. aiohttp's own heartbeat would close it gracefully instead, which
        # keeps a stalled peer's unsent bytes in the kernel for minutes.
        heartbeat=None,
        autoping=False,  # client pings count against the flood limit; their pongs are written like any reply
        compress=False,  # frames are encoded once and written as they are to every client
        max_msg_size=server.max_message_size,
        timeout=CLOSE_TIMEOUT,
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the peer went away during the handshake
        return ws
    counters = request.app[COUNTERS]
    client = Client(
        ws,
        heartbeat_interval=server.heartbeat_interval,
        write_timeout=server.write_timeout,
        transport=transport,
    )
    if hub.closing:  # upgraded while shutdown closes the others: this one goes away too
        await client.close(WSCloseCode.GOING_AWAY, b"server shutdown", timeout=CLOSE_TIMEOUT)
        return ws
    try:
        start(client)
        await _read(ws, client, label, on_text, on_binary)
    except ConnectionError:
        pass  # the peer reset the connection: nothing to answer
    finally:
        counters.count(counters.closed, close_reason(client.closed_reason))
        hub.detach(client)
        if transport.get_write_buffer_size():
            # Whatever ended the socket, bytes the peer never read would hold buffers until TCP
            # gives up (a graceful close waits for them): drop the connection now.
            reset(transport)
    return ws


async def _read(
    ws: web.WebSocketResponse,
    client: Client,
    label: str,
    on_text: Callable[[Client, str], None],
    on_binary: Callable[[Client], None] | None,
) -> None:
    """Take what the peer sends until it closes, floods or sends an oversized frame."""
    bucket = _TokenBucket(FLOOD_BURST, FLOOD_RATE)
    async for msg in ws:
        client.heard()
        if msg.type is WSMsgType.PONG:
            continue
        if not bucket.take():
            logger.warning("closing a client of %s: message flood", label)
            await client.close(WSCloseCode.POLICY_VIOLATION, b"too many messages")
            return
        if msg.type is WSMsgType.TEXT:
            on_text(client, msg.data)
        elif msg.type is WSMsgType.BINARY:
            if on_binary is not None:
                on_binary(client)
        elif msg.type is WSMsgType.PING:
            client.post_control(msg.data, WSMsgType.PONG)
        elif msg.type is WSMsgType.ERROR:
            client.closed_reason = client.closed_reason or "oversized"
            return  # aiohttp already closed the socket (1009 for an oversized frame)


def close_reason(why: str | None) -> str:
    """Return the metrics label of why a connection ended (``counters.CLOSE_REASONS``)."""
    if why is None:
        return "peer"
    for start, label in (
        ("slow client", "slow"),
        ("no answer to a ping", "ping"),
        ("too many messages", "flood"),
        ("oversized", "oversized"),
        ("server shutdown", "shutdown"),
    ):
        if why.startswith(start):
            return label
    return "peer"


def add_routes(app: web.Application, prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Serve every channel's WebSocket path under each of ``prefixes``; return their Routes."""
    routes = []
    for prefix in prefixes:
        for family, spec in SPECS.items():
            path = f"{prefix}/ws{spec.path}"
            handler = channel_handler(adw_state_of if spec.param else _always(family))
            app.router.add_get(path, handler, allow_head=False)
            routes.append(
                route(
                    path,
                    "GET",
                    f"{family.replace('-', '_')}_ws",
                    f"WebSocket: {spec.type} messages",
                    "Current state on connect, then every change (at most one per min_interval)",
                    ["websocket"],
                )
            )
    return routes


def _always(channel: str) -> Callable[[web.Request], str]:
    return lambda _request: channel
