"""Which browser pages may read this service: its own origin, and the allowed ones.

By default any ``http(s)://localhost``, ``127.0.0.1`` or ``[::1]`` page (a dashboard dev server on
5173, say); ``[server] cors_origins`` names others, ``"*"`` any.
"""

from __future__ import annotations

import re

from aiohttp import web

from ..config import ServerConfig
from .keys import CONFIG

_LOCAL_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?")


def origin_allowed(origin: str, server: ServerConfig) -> bool:
    """Return whether a browser page from ``origin`` may read this service."""
    if not server.cors_origins:
        return bool(_LOCAL_ORIGIN.fullmatch(origin))
    return "*" in server.cors_origins or origin in server.cors_origins


def page_allowed(request: web.Request, origin: str) -> bool:
    """Return whether a page from ``origin`` may make ``request``: the service's own pages always may."""
    if origin == f"{request.scheme}://{request.host}":  # the dashboard, whatever name it is reached by
        return True
    return origin_allowed(origin, request.app[CONFIG].server)


def cookie_allowed(request: web.Request, origin: str) -> bool:
    """Return whether a page from ``origin`` may make ``request`` with the token cookie.

    Only the service's own pages and the origins ``[server] cors_origins`` names: the default
    "any local page" rule is not enough, since a browser sends the cookie along with any page's
    request to this host (SameSite ignores ports), so every other local port would hold the token.
    """
    if origin == f"{request.scheme}://{request.host}":
        return True
    server = request.app[CONFIG].server
    return bool(server.cors_origins) and origin_allowed(origin, server)
