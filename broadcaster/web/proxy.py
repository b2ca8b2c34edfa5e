"""The upstream: every request and WebSocket upgrade this service does not serve goes to ``[upstream] url``.

A dashboard built for one backend port then gets its live channels from this service and
everything else from its own backend. The service's own paths always win (the proxy's route is
registered last). Requests go out as they came (method, path, query, body streamed, headers less
hop-by-hop ones, plus ``X-Forwarded-For``/``-Proto``/``-Host``); answers come back the same way,
streamed, redirects passed on and not followed, bodies not decompressed. An upstream that cannot
be reached gets ``502``, one that sends no first byte within ``[upstream] timeout`` gets ``504``,
both with a JSON ``detail`` naming it; the service's channels are untouched either way.
WebSocket upgrades are relayed (``relay``). A method the service does not answer on one of its
own paths is 405 here; it never reaches the upstream. A ``Location``, ``Content-Location`` or
``Refresh`` that points at the upstream's own origin is rewritten to the origin the client used,
so a redirect never sends a browser around this service (where the backend's CORS would refuse
the page).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..config import UpstreamConfig
from .auth import strip_token
from .keys import COUNTERS
from .problems import Handler, problem
from .relay import is_upgrade, relay, relay_session

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


def add_proxy(app: web.Application, config: UpstreamConfig) -> None:
    """Forward every path not served so far to ``config.url`` (call after every own route is added)."""
    app.cleanup_ctx.append(_session)
    app.cleanup_ctx.append(relay_session)
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
    upstream = URL(base)

    async def forward(request: web.Request) -> web.StreamResponse:
        if not request.raw_path.startswith("/"):  # an absolute-form target ("GET http://other/"): not ours to relay
            return problem(400, "the request target must be a path")
        own = await own_methods(request)
        if own:  # the service's own path, with a method it does not answer: not the upstream's either
            allowed = ", ".join(sorted(own))
            detail = f"method {request.method} is not allowed on {request.path[:200]} (allowed: {allowed})"
            return problem(405, detail, headers={"Allow": allowed})
        headers, target = strip_token(request, _outgoing(request), URL(base + request.raw_path, encoded=True))
        if is_upgrade(request):
            return await relay(request, target, headers, base)
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
            hop = _hop_by_hop(answer.headers) - {"content-length"}
            client_origin = URL.build(scheme=request.scheme, authority=request.host)
            for name, value in answer.headers.items():
                if name.lower() not in hop:
                    response.headers.add(name, _pointed_here(name, value, upstream, client_origin))
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


REWRITTEN = frozenset({"location", "content-location"})


def _pointed_here(name: str, value: str, upstream: URL, client: URL) -> str:
    """Return a header ``value`` that names a URL under ``upstream`` with the ``client``'s origin instead.

    A path under the upstream's own path (``[upstream] url = "http://b:9100/api"``) loses it: the
    client's ``/x`` is the upstream's ``/api/x``.
    """
    lowered = name.lower()
    if lowered in REWRITTEN:
        return _same_path_at(value, upstream, client)
    if lowered == "refresh":  # "5; url=http://backend/next"
        delay, sep, rest = value.partition(";")
        key, eq, target = rest.strip().partition("=")
        if sep and eq and key.strip().lower() == "url":
            quote = target[:1] if target[:1] in "'\"" and target[-1:] == target[:1] and len(target) > 1 else ""
            inner = target[1:-1] if quote else target
            return f"{delay}; url={quote}{_same_path_at(inner.strip(), upstream, client)}{quote}"
    return value


def _same_path_at(value: str, upstream: URL, client: URL) -> str:
    try:
        url = URL(value, encoded=True)
    except ValueError:
        return value
    if not url.is_absolute() or url.origin() != upstream.origin():
        return value  # relative (already the client's origin), or another site: as it came
    rest = value[len(str(url.origin())) :]
    prefix = upstream.raw_path.rstrip("/")
    if prefix:
        if rest != prefix and not rest.startswith(prefix + "/"):
            return value  # the upstream's host, but outside the part of it this service fronts
        rest = rest[len(prefix) :]
    return str(client) + (rest if rest.startswith("/") or not rest else "/" + rest)


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await request.content.read(CHUNK):
        yield chunk


async def own_methods(request: web.Request) -> set[str]:
    """Return the methods the service itself answers on ``request``'s path (empty: not one of its paths)."""
    for method in ("GET", "POST"):
        match = await request.app.router.resolve(request.clone(method=method))
        route = match.route
        if route.name != UPSTREAM_ROUTE and route.method != "*" and match.http_exception is None:
            return {m for m in _methods(request.app, route.resource) if m != request.method}
    return set()


def _methods(app: web.Application, resource: web.AbstractResource | None) -> set[str]:
    methods = {route.method for route in resource or ()}
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def _hop_by_hop(headers: CIMultiDictProxy[str]) -> set[str]:
    """Return the names not to pass on: RFC 9110's hop-by-hop ones and those ``Connection`` names."""
    named = {name.strip().lower() for value in headers.getall("Connection", []) for name in value.split(",")}
    return set(HOP_BY_HOP) | named - {""}


def _outgoing(request: web.Request) -> CIMultiDict[str]:
    hop = _hop_by_hop(request.headers)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in hop)  # repeats kept
    peer = request.remote or ""
    earlier = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers
