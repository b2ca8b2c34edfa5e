"""``/ws``, the multiplexed socket: one connection, any set of channels (docs/protocol.md, "/ws").

Channels are subscribed by query (``?channels=queue,adw-state:77c90e61&since=queue:17&epoch=...``)
or by message (``subscribe`` / ``unsubscribe``). Each channel is attached to the hub exactly as a
single-channel socket's is, so the throttle, dedup, resume and slow-client rules are the same and
the frames are the same bytes. What a client gets wrong costs it an error frame for that item,
never its other subscriptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from ..channels.service_data import route
from ..channels.specs import channel_name
from ..core.client import Client
from ..core.events import EventLog
from ..core.hub import Hub
from ..core.protocol import parse_count, reply_to
from .keys import CONFIG, EVENT_LOG, HUB
from .ws import greet, run_socket

logger = logging.getLogger(__name__)
ECHO_LIMIT = 100  # characters of a client's own text repeated in an error frame
ERRORS_PER_MESSAGE = 20  # error frames one message may cause; the rest are counted in one more


def error(detail: str, channel: Any = None) -> bytes:
    """Encode an error frame (with the offending channel name, cut short, when there is one)."""
    message: dict[str, Any] = {"type": "error"}
    if isinstance(channel, str):
        message["channel"] = channel[:ECHO_LIMIT]
    message["detail"] = detail
    return orjson.dumps(message)


class MuxSession:
    """What one ``/ws`` socket follows, and the answers to its messages."""

    def __init__(self, hub: Hub, log: EventLog, client: Client, *, limit: int) -> None:
        self._hub = hub
        self._log = log
        self._client = client
        self._limit = limit
        self._errors_left = ERRORS_PER_MESSAGE
        self._unshown = 0

    def subscribe(
        self, channels: Iterable[Any], since: Mapping[str, Any], epoch: str | None, *, patches: bool = False
    ) -> None:
        """Answer ``subscribed`` with the channels taken, then send each one's snapshot or resume answer."""
        taken: dict[str, int | None] = {}
        room = self._limit - self._hub.subscriptions(self._client)
        refused = 0
        for name in channels:
            try:
                channel = channel_name(name)
            except ValueError as exc:
                self._refuse(str(exc), name)
                continue
            seq = since.get(channel)
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
                self._refuse(f"since must be a non-negative integer (a seq), got {_short(seq)}", channel)
                continue
            if channel not in taken and not self._hub.subscribed(self._client, channel):
                if room <= 0:
                    refused += 1
                    continue
                room -= 1
            taken[channel] = seq
        self._count_unshown()
        if refused:
            self._send(error(f"at most {self._limit} subscriptions per socket: {refused} channel(s) not subscribed"))
        self._send(orjson.dumps({"type": "subscribed", "channels": list(taken), "epoch": self._hub.epoch}))
        for channel, seq in taken.items():
            resume = None if seq is None else (seq, epoch or "")
            greet(self._hub, self._log, self._client, channel, resume, patches=patches)

    def unsubscribe(self, channels: Iterable[Any]) -> None:
        """Stop the named channels; answer ``unsubscribed`` with those that were followed."""
        gone = []
        for name in channels:
            if not isinstance(name, str) or not self._hub.detach(self._client, name):
                self._refuse("not subscribed", name)
            else:
                gone.append(name)
        if gone:
            self._send(orjson.dumps({"type": "unsubscribed", "channels": gone}))

    def answer(self, action: Callable[[], None]) -> None:
        """Run ``action`` (the handling of one request): at most ERRORS_PER_MESSAGE error frames, then a count."""
        self._errors_left, self._unshown = ERRORS_PER_MESSAGE, 0
        action()
        self._count_unshown()

    def _count_unshown(self) -> None:
        if self._unshown:
            self._send(error(f"{self._unshown} more error(s) in that message not shown"))
            self._unshown = 0

    def on_text(self, client: Client, text: str) -> None:
        """Answer one text message of the client."""
        self.answer(lambda: self._on_text(client, text))

    def _refuse(self, detail: str, channel: Any) -> None:
        if self._errors_left > 0:
            self._errors_left -= 1
            self._send(error(detail, channel))
        else:
            self._unshown += 1

    def _on_text(self, client: Client, text: str) -> None:
        reply = reply_to(text)
        if reply is not None:
            client.post_control(reply)
            return
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._send(error("not JSON: send a JSON object with a type"))
            return
        if not isinstance(message, dict):
            self._send(error("not a JSON object: send a JSON object with a type"))
            return
        kind = message.get("type")
        if kind == "subscribe":
            self._on_subscribe(message)
        elif kind == "unsubscribe":
            channels = message.get("channels")
            if not isinstance(channels, list):
                self._send(error("unsubscribe needs channels: a list of channel names"))
                return
            self.unsubscribe(channels)
        # other types (client_ready, ...) are ignored, as on the single-channel paths

    def on_binary(self, client: Client) -> None:
        """Answer a binary message: the protocol is JSON text."""
        self._send(error("binary messages are not part of the protocol: send JSON text"))

    def _on_subscribe(self, message: dict[str, Any]) -> None:
        channels, since, epoch = message.get("channels"), message.get("since", {}), message.get("epoch")
        patches = message.get("patches", False)
        if not isinstance(channels, list):
            self._send(error("subscribe needs channels: a list of channel names"))
        elif not isinstance(since, dict):
            self._send(error('since is an object of channel -> seq, e.g. {"queue": 17}'))
        elif epoch is not None and not isinstance(epoch, str):
            self._send(error("epoch is a string: the one the server sent"))
        elif not isinstance(patches, bool):
            self._send(error("patches is true or false"))
        else:
            self.subscribe(channels, since, epoch, patches=patches)

    def _send(self, payload: bytes) -> None:
        self._client.post_control(payload)


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text[:40]


def query_subscription(request: web.Request) -> tuple[list[str], dict[str, Any], str | None, bool]:
    """Return the channels, since, epoch and patches a ``/ws`` URL asks for; raise 400 if it asks wrongly.

    ``since`` is ``channel:seq`` pairs, comma-separated (``queue:17,adw-state:77c90e61:4``); a bad
    pair is answered like a bad subscribe item, with an error frame, so it is passed on as given.
    """
    query = request.query
    channels = [c for c in query.get("channels", "").split(",") if c]
    since: dict[str, Any] = {}
    for pair in query.get("since", "").split(","):
        if pair:
            name, _, seq = pair.rpartition(":")
            if not name:
                raise web.HTTPBadRequest(text=f"since is channel:seq pairs, got {pair[:40]!r}")
            count = parse_count(seq)
            since[name] = count if count is not None else seq
    patches = query.get("patches", "0")
    if patches not in ("0", "1", "true", "false"):
        raise web.HTTPBadRequest(text=f"patches is 1 or 0, got {patches[:40]!r}")
    return channels, since, query.get("epoch"), patches in ("1", "true")


async def serve_mux(request: web.Request) -> web.StreamResponse:
    """Upgrade ``request`` to a multiplexed socket."""
    channels, since, epoch, patches = query_subscription(request)
    hub = request.app[HUB]
    limit = request.app[CONFIG].server.max_subscriptions
    subs: MuxSession | None = None

    def start(client: Client) -> None:
        nonlocal subs
        subs = MuxSession(hub, request.app[EVENT_LOG], client, limit=limit)
        if channels:
            subs.answer(lambda: subs.subscribe(channels, since, epoch, patches=patches) if subs else None)

    def on_text(client: Client, text: str) -> None:
        assert subs is not None
        subs.on_text(client, text)

    def on_binary(client: Client) -> None:
        assert subs is not None
        subs.on_binary(client)

    return await run_socket(request, "/ws", start, on_text, on_binary)


def add_mux_routes(app: web.Application, prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Serve ``/ws`` under each of ``prefixes``; return its Routes."""
    routes = []
    for prefix in prefixes:
        path = f"{prefix}/ws"
        app.router.add_get(path, serve_mux, allow_head=False)
        routes.append(
            route(
                path,
                "GET",
                "multiplexed_ws",
                "WebSocket: any set of channels on one socket",
                "subscribe / unsubscribe by query or message; every frame names its channel",
                ["websocket"],
            )
        )
    return routes
