"""The upstream: every request and WebSocket upgrade this service does not serve goes to ``[upstream] url``.

A dashboard built for one backend port then gets its live channels from this service and
everything else from its own backend. The service's own paths always win (the proxy's route is
registered last). Requests go out as they came (method, path, query, body streamed, headers less
hop-by-hop ones, plus ``X-Forwarded-For``/``-Proto``/``-Host``); answers come back the same way,
streamed, redirects passed on and not followed, bodies not decompressed. An upstream that cannot
be reached gets ``502``, one that sends no first byte within ``[upstream] timeout`` gets ``504``,
both with a JSON ``detail`` naming it; the service's channels are untouched either way.
WebSocket upgrades are relayed message by message both ways, close codes kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from ..config import UpstreamConfig
from ..keys import COUNTERS
from ..problems import Handler, problem
from .auth import strip_token

logger = logging.getLogger(__name__)

UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
UPSTREAM_ROUTE = "upstream"  # the catch-all route's name: the origin policy leaves its requests to the upstream
CHUNK = 64 * 1024

# Headers that describe one connection, not the message (RFC 9110 7.6.1), and those the
# sending side sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_WS_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"})


def add_proxy(app: web.Application, config: UpstreamConfig) -> None:
    """Forward every path not served so far to ``config.url`` (call after every own route is added)."""
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", _handler(config), name=UPSTREAM_ROUTE)


async def _session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        auto_decompress=False,  # bytes pass through as the upstream encoded them
        cookie_jar=aiohttp.DummyCookieJar(),  # cookies belong to the browser, not to this service
        timeout=aiohttp.ClientTimeout(total=None),
    ) as session:
        app[UPSTREAM_SESSION] = session
        yield


def _handler(config: UpstreamConfig) -> Handler:
    base = config.url.rstrip("/")

    async def forward(request: web.Request) -> web.StreamResponse:
        if not request.raw_path.startswith("/"):  # an absolute-form target ("GET http://other/"): not ours to relay
            return problem(400, "the request target must be a path")
        headers, target = strip_token(request, _outgoing(request), URL(base + request.raw_path, encoded=True))
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _relay(request, target, headers, base, config.timeout)
        session = request.app[UPSTREAM_SESSION]
        counters = request.app[COUNTERS]
        try:
            async with asyncio.timeout(config.timeout):
                answer = await session.request(
                    request.method,
                    target,
                    headers=headers,
                    data=_body(request) if request.body_exists else None,
                    allow_redirects=False,
                )
        except TimeoutError:
            counters.count(counters.upstream, "timeout")
            return problem(504, f"upstream {base} did not answer within {config.timeout:g}s")
        except aiohttp.ClientError as exc:
            counters.count(counters.upstream, "unreachable")
            return problem(502, f"upstream {base} cannot be reached: {exc}")
        counters.count(counters.upstream, f"{answer.status // 100}xx")
        async with answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP or name.lower() == "content-length":
                    response.headers.add(name, value)
            await response.prepare(request)
            try:
                async for chunk in answer.content.iter_chunked(CHUNK):
                    await response.write(chunk)
            except aiohttp.ClientError as exc:  # the upstream broke off mid-answer: so must we
                logger.warning("upstream %s broke off %s %s: %s", base, request.method, request.path[:200], exc)
                if request.transport is not None:
                    request.transport.abort()  # the client sees a cut answer, never a whole-looking short one
                return response
            await response.write_eof()
        return response

    return forward


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await request.content.read(CHUNK):
        yield chunk


def _outgoing(request: web.Request) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)  # repeats kept
    peer = request.remote or ""
    earlier = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


async def _relay(
    request: web.Request, target: URL, headers: CIMultiDict[str], base: str, timeout: float
) -> web.StreamResponse:
    """Relay a WebSocket between the client and the upstream, both ways, until either closes."""
    session = request.app[UPSTREAM_SESSION]
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    sent = CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in _WS_HANDSHAKE and k.lower() != "sec-websocket-protocol"
    )
    try:
        async with asyncio.timeout(timeout):
            upstream = await session.ws_connect(target, headers=sent, protocols=protocols, max_msg_size=0)
    except TimeoutError:
        return problem(504, f"upstream {base} did not answer within {timeout:g}s")
    except aiohttp.WSServerHandshakeError as exc:
        return problem(exc.status if exc.status >= 400 else 502, f"upstream {base} refused the WebSocket: {exc}")
    except aiohttp.ClientError as exc:
        return problem(502, f"upstream {base} cannot be reached: {exc}")
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0)
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
    except (ConnectionError, aiohttp.ClientError):
        return  # the other side is gone: the relay ends, as when either side closes
