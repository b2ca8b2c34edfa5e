"""Files the service ships for browsers: ``/client.js`` and its types (``static/``, inside the package)."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from aiohttp import web

from ..service_views import route
from .http import Handler

FILES = {
    "/client.js": ("client.js", "text/javascript", "The browser client: an ES module, no build step"),
    "/client.d.ts": ("client.d.ts", "application/typescript", "TypeScript declarations of /client.js"),
}


def _file(name: str, content_type: str) -> Handler:
    body = resources.files(__package__).joinpath("static", name).read_bytes()  # read once, at start
    etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'

    async def handler(request: web.Request) -> web.StreamResponse:
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
        return web.Response(
            body=body, content_type=content_type, charset="utf-8", headers={"ETag": etag, "Cache-Control": "no-cache"}
        )

    return handler


def add_static_routes(app: web.Application) -> list[dict[str, Any]]:
    """Serve the shipped files; return their Routes."""
    routes = []
    for path, (name, content_type, summary) in FILES.items():
        app.router.add_get(path, _file(name, content_type), allow_head=False)
        routes.append(route(path, "GET", name.replace(".", "_"), summary, summary, ["static"]))
    return routes
