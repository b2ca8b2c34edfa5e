"""WebSocket upgrades for the upstream, relayed message by message both ways, close codes kept.

A relayed socket obeys the rules of the service's own: the origin policy on the upgrade
(``guards.origin_policy``), both connection limits (``limits``), ``[server] max_message_size``
each way (1009 to the side that sends more), no compression extension offered to or accepted
from either side (a small compressed frame can inflate to gigabytes), and a close handshake
that cannot hang. Relays hold connections to the upstream of their own, at most
``[upstream] max_relays`` (past that: 503), so they can never starve plain proxied requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from .keys import CONFIG
from .limits import LIMITS
from .problems import problem

RELAY_SESSION = web.AppKey("relay_session", aiohttp.ClientSession)
RELAYS = web.AppKey("relays", list)  # one entry per relay held: its count is what max_relays bounds
CLOSE_TIMEOUT = 1.0  # seconds either side gets to answer a close frame
_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)


async def relay_session(app: web.Application) -> AsyncIterator[None]:
    """Hold the relays' own connections to the upstream (a pool of ``max_relays``)."""
    limit = app[CONFIG].upstream.max_relays
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    ) as session:
        app[RELAY_SESSION] = session
        app[RELAYS] = []
        yield


def is_upgrade(request: web.Request) -> bool:
    """Return whether ``request`` asks for a WebSocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def relay(request: web.Request, target: URL, headers: CIMultiDict[str], base: str) -> web.StreamResponse:
    """Relay a WebSocket between the client and the upstream at ``target``, both ways, until either closes."""
    config = request.app[CONFIG]
    held = request.app[RELAYS]
    if len(held) >= config.upstream.max_relays:
        return problem(
            503, f"all {config.upstream.max_relays} relays to the upstream are in use ([upstream] max_relays)"
        )
    limits, address = request.app[LIMITS], request.remote or ""
    refusal = limits.admit(address)
    if refusal is not None:
        return refusal
    held.append(request)
    try:
        return await _relay(request, target, headers, base)
    finally:
        held.remove(request)
        limits.release(address)


async def _relay(request: web.Request, target: URL, headers: CIMultiDict[str], base: str) -> web.StreamResponse:
    config = request.app[CONFIG]
    timeout, max_size = config.upstream.timeout, config.server.max_message_size
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    sent = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HANDSHAKE)
    try:
        async with asyncio.timeout(timeout):
            upstream = await request.app[RELAY_SESSION].ws_connect(
                target,
                headers=sent,
                protocols=protocols,
                max_msg_size=max_size,
                compress=0,  # offer no permessage-deflate
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
            )
    except TimeoutError:
        return problem(504, f"upstream {base} did not answer within {timeout:g}s")
    except aiohttp.WSServerHandshakeError as exc:
        return problem(exc.status if exc.status >= 400 else 502, f"upstream {base} refused the WebSocket: {exc}")
    except aiohttp.ClientError as exc:
        return problem(502, f"upstream {base} cannot be reached: {exc}")
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (),
        max_msg_size=max_size,
        compress=False,  # accept no permessage-deflate
        timeout=CLOSE_TIMEOUT,
    )
    try:
        await client.prepare(request)
        to_upstream = asyncio.create_task(_pump(client, upstream))
        to_client = asyncio.create_task(_pump(upstream, client))
        done, _ = await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
        for task in (to_upstream, to_client):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if to_client in done:  # the upstream closed: tell the client with its code
            await client.close(code=upstream.close_code or 1000)
        else:
            await upstream.close(code=client.close_code or 1000)
    finally:
        await upstream.close()
    return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    try:
        async for message in source:
            if message.type is WSMsgType.TEXT:
                await sink.send_str(message.data)
            elif message.type is WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            elif message.type is WSMsgType.ERROR:
                return  # an oversized or malformed frame: aiohttp closed that side (1009, 1002)
    except (ConnectionError, aiohttp.ClientError):
        return  # the other side is gone: the relay ends, as when either side closes
