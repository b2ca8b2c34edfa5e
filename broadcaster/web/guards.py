"""Who may talk to the service: the Host check, the origin policy, and the handshake deadline.

- **Host check** (DNS rebinding): a page on ``evil.example`` whose name is made to resolve to
  127.0.0.1 reaches this port as a same-origin page, and browsers send no ``Origin`` on
  same-origin GETs. So when the service is bound to loopback, a request whose ``Host`` is not a
  loopback name or address (or one of ``[server] allowed_hosts``) is refused with 403.
- **Origin policy**: browsers send ``Origin`` on cross-origin requests and on every WebSocket
  upgrade; pages from origins not allowed are refused, allowed ones get CORS headers.
- **Handshake deadline**: a connection that has not sent one whole request within
  ``[server] handshake_timeout`` seconds is dropped, so half-sent requests cannot pile up until
  the process runs out of descriptors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..config import ServerConfig
from .keys import CONFIG
from .origins import page_allowed
from .problems import problem
from .proxy import UPSTREAM_ROUTE
from .relay import is_upgrade

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost")
_HOST_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(:\d{1,5})?")


def is_loopback(host: str) -> bool:
    """Return whether ``host`` (a name or address, IPv6 possibly in brackets) is this machine's loopback."""
    name = host.strip().lower().strip("[]")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(header: str, server: ServerConfig) -> bool:
    """Return whether a request with ``Host: header`` may be served."""
    if "*" in server.allowed_hosts:
        return True
    match = _HOST_PORT.fullmatch(header.strip())
    host = match.group("host").strip("[]").lower() if match else ""
    if host in (h.lower() for h in server.allowed_hosts):
        return True
    if not is_loopback(server.host) and not server.allowed_hosts:
        return True  # bound beyond loopback with no list: names are the operator's business
    return is_loopback(host)


@web.middleware
async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests for a Host that is not this service's (see the module docstring)."""
    request.app[HANDSHAKES_KEY].arrived(request)
    server = request.app[CONFIG].server
    host = request.headers.get("Host", "")
    if not host_allowed(host, server):
        return problem(403, f"host {host[:100]!r} is not allowed (see [server] allowed_hosts)")
    return await handler(request)


async def _upstreams(request: web.Request) -> bool:
    """Return whether ``request`` is for a path only the upstream serves (a preflight counts by its path).

    A WebSocket upgrade never is: browsers apply no CORS to WebSockets, so a relayed socket
    obeys this service's origin policy like its own.
    """
    if request.match_info.route.name != UPSTREAM_ROUTE or is_upgrade(request):
        return False
    if request.method != "OPTIONS":
        return True
    as_get = await request.app.router.resolve(request.clone(method="GET"))
    return as_get.route.name == UPSTREAM_ROUTE


@web.middleware
async def origin_policy(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflights, add CORS headers, and refuse pages from other origins."""
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)  # not a browser page: curl, scripts, the Python client
    if await _upstreams(request):
        return await handler(request)  # the upstream's paths: its own CORS answers (preflights too)
    if not page_allowed(request, origin):
        return problem(403, f"origin {origin} is not allowed (see [server] cors_origins)")
    cors = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": "ETag",
        "Vary": "Origin",
    }
    if request.method == "OPTIONS":
        return web.Response(
            status=204,
            headers={
                **cors,
                "Access-Control-Allow-Methods": "GET, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", ""),
                "Access-Control-Max-Age": "600",
            },
        )
    response = await handler(request)
    if not response.prepared:  # a WebSocket is already upgraded; nothing to add
        response.headers.update(cors)
    return response


class Handshakes:
    """Drop connections that have not sent a whole request within ``timeout`` seconds.

    ``wrap`` wraps the server's protocol factory (see ``site.GuardedSite``): each new connection
    gets a deadline, and ``arrived`` (called for every request, by ``host_check``) lifts it. One
    timer per connection, only until its first request.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.dropped = 0
        self._deadlines: dict[int, asyncio.TimerHandle] = {}
        self._last_log = float("-inf")

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], Any]:
        """Return a protocol factory that gives each connection made by ``factory`` a deadline."""

        def make() -> Any:
            protocol = factory()
            loop = asyncio.get_running_loop()
            self._deadlines[id(protocol)] = loop.call_later(self.timeout, self._expire, protocol)
            return protocol

        return make

    def arrived(self, request: web.Request) -> None:
        """Lift the deadline of the connection ``request`` came on."""
        deadline = self._deadlines.pop(id(request.protocol), None)
        if deadline is not None:
            deadline.cancel()

    def _expire(self, protocol: Any) -> None:
        self._deadlines.pop(id(protocol), None)  # the timer holds the protocol: its id is not reused yet
        transport = getattr(protocol, "transport", None)
        if transport is None or transport.is_closing():
            return
        transport.abort()  # nothing was sent to it: there is nothing queued to discard
        self.dropped += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_log >= 60:  # a flood of these must not become a flood of log lines
            self._last_log = now
            logger.warning(
                "dropped a connection that sent no whole request within %gs (%d so far)", self.timeout, self.dropped
            )


HANDSHAKES_KEY = web.AppKey("handshakes", Handshakes)
