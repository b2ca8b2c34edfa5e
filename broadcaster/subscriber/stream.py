"""A Python client of the multiplexed socket: ``async for message in subscribe(url, channels)``.

    from broadcaster.subscriber import subscribe

    async for message in subscribe("http://127.0.0.1:8002", ["queue", "adw-monitor"]):
        print(message["channel"], message["seq"], message["data"])

Every message is a whole channel message (``type``, ``channel``, ``seq``, ``timestamp``, ``data``):
patches are applied here, so callers always see whole data. The connection is kept forever:
a dropped socket is reopened after an exponential backoff with full jitter (the first retry
within 1 s, at most 30 s apart) and resumed with ``since``/``epoch``, so nothing already
received comes again; the first message after a resume carries ``recovered`` (true: only what
was missed; false: the server could not vouch for the gap and sent the current state).
``retry_for`` gives up (``ConnectionError``) after that many seconds without a connection.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from sources.backoff import Backoff

from ..channels.specs import channel_name, spec_of
from ..core.patches import apply_merge_patch, keyed_form, list_form

logger = logging.getLogger(__name__)
# The first reconnect comes within 1 s; reconnects are never more than 30 s apart.
RECONNECT = Backoff(1.0, 30.0, jitter=True)


def socket_url(url: str) -> str:
    """Return the ``/ws`` URL of a service URL (``http(s)://`` or ``ws(s)://``, with any path prefix)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the service URL is http(s):// or ws(s)://, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class _Channel:
    """What the client holds of one channel: the last seq, and the data patches apply to."""

    __slots__ = ("held", "keyed", "seq")

    def __init__(self, name: str) -> None:
        self.keyed = spec_of(name).keyed
        self.seq: int | None = None
        self.held: Any = None  # keyed form of the last data, for patch channels

    def take(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Return ``message`` with whole data; None when it is a patch that does not fit (a gap)."""
        if "patch" in message:
            if self.keyed is None or self.held is None or message.get("base_seq") != self.seq:
                return None
            self.held = apply_merge_patch(self.held, message["patch"])
            whole = {k: v for k, v in message.items() if k not in ("patch", "base_seq")}
            whole["data"] = list_form(self.held, self.keyed)
        else:
            whole = message
            if self.keyed is not None:
                try:
                    self.held = keyed_form(message.get("data"), self.keyed)
                except ValueError:
                    self.held = None  # no usable ids: the server sends such data whole
        self.seq = whole.get("seq")
        return whole


async def subscribe(
    url: str,
    channels: Iterable[str],
    *,
    patches: bool = True,
    token: str | None = None,
    retry_for: float | None = None,
    session: aiohttp.ClientSession | None = None,
    on_state: Callable[[str], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield every message of ``channels`` from the service at ``url``, reconnecting and resuming forever.

    Args:
        url: the service, e.g. ``http://127.0.0.1:8002`` (``/ws`` is added).
        channels: channel names (``queue``, ``adw-state:77c90e61``; docs/protocol.md); a bad one raises ValueError.
        patches: ask for merge patches (applied here; callers see whole data either way).
        token: sent as ``Authorization: Bearer`` when the service wants one.
        retry_for: raise ConnectionError after this many seconds without a connection (None: never).
        session: an aiohttp session to use (one is made and closed otherwise).
        on_state: called with ``"connected"`` when a socket opens and ``"reconnecting"`` when it is lost.
    """
    names = [channel_name(c) for c in channels]
    held = {name: _Channel(name) for name in names}
    endpoint = socket_url(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    own = session is None
    http = session or aiohttp.ClientSession()
    resume = _Resume()
    attempt = 0
    connected = False
    down_since = time.monotonic()
    try:
        while True:
            query = resume.query(held, patches)
            try:
                async with http.ws_connect(endpoint, params=query, headers=headers, max_msg_size=0) as ws:
                    attempt = 0
                    connected = True
                    if on_state is not None:
                        on_state("connected")
                    async with contextlib.aclosing(_read(ws, held, patches, resume)) as messages:
                        async for whole in messages:
                            yield whole
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                logger.debug("connection to %s failed: %s", endpoint, exc)
            if connected:
                connected = False
                down_since = time.monotonic()
                if on_state is not None:
                    on_state("reconnecting")
            if retry_for is not None and time.monotonic() - down_since > retry_for:
                raise ConnectionError(f"cannot reach {endpoint} (tried for {retry_for:g}s)")
            attempt += 1
            await RECONNECT.pause(attempt)
    finally:
        if own:
            await http.close()


@dataclass(slots=True)
class _Resume:
    """Where the next connection resumes: the log's epoch as the service last said it."""

    epoch: str | None = None

    def query(self, held: dict[str, _Channel], patches: bool) -> dict[str, str]:
        """Return the query of a (re)connection: the channels, patches, and since/epoch once known."""
        query: dict[str, str] = {"channels": ",".join(held)}
        if patches:
            query["patches"] = "1"
        since = [f"{name}:{c.seq}" for name, c in held.items() if c.seq is not None]
        if self.epoch is not None and since:
            query.update(since=",".join(since), epoch=self.epoch)
        return query


async def _read(
    ws: aiohttp.ClientWebSocketResponse, held: dict[str, _Channel], patches: bool, resume: _Resume
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield each message of ``ws`` with whole data; after a gap, ask for the channel again."""
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        message = orjson.loads(msg.data)
        kind = message.get("type")
        if kind == "subscribed":
            resume.epoch = message.get("epoch", resume.epoch)
            continue
        if kind == "error":
            logger.warning("the service refused: %s", message)
            continue
        channel = held.get(message.get("channel"))
        if channel is None:
            continue  # heartbeats, pongs
        resume.epoch = message.get("epoch", resume.epoch)
        whole = channel.take(message)
        if whole is None:  # a patch after a gap: ask for the whole state again
            again = {"type": "subscribe", "channels": [message["channel"]], "patches": patches}  # as at first
            await ws.send_str(orjson.dumps(again).decode())
            continue
        yield whole
