"""Files the service ships for browsers, from ``static/`` inside the package, read once at start.

``/client.js`` and its types, and the dashboard: ``/`` is its page, ``/dashboard/*`` its styles
and modules. Answers carry an ETag (the content's hash) and ``Cache-Control: no-cache``, so a
browser revalidates and gets 304 until the package changes.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from aiohttp import web

from ..service_views import route
from .http import Handler

TYPES = {".js": "text/javascript", ".ts": "application/typescript", ".css": "text/css", ".html": "text/html"}
FILES = {
    "/client.js": ("client.js", "The browser client: an ES module, no build step"),
    "/client.d.ts": ("client.d.ts", "TypeScript declarations of /client.js"),
    "/": ("dashboard/index.html", "The dashboard"),
}


def shipped() -> dict[str, tuple[str, str]]:
    """Return every served path: its file under ``static/`` and a summary."""
    files = dict(FILES)
    dashboard = resources.files(__package__).joinpath("static", "dashboard")
    for entry in sorted(dashboard.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".js", ".css")):
            files[f"/dashboard/{entry.name}"] = (f"dashboard/{entry.name}", "A part of the dashboard")
    return files


def content_type(name: str) -> str:
    """Return the media type a shipped file is served as."""
    return TYPES[name[name.rindex(".") :]]


def _file(name: str) -> Handler:
    body = resources.files(__package__).joinpath("static", *name.split("/")).read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
    kind = content_type(name)

    async def handler(request: web.Request) -> web.StreamResponse:
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
        return web.Response(
            body=body, content_type=kind, charset="utf-8", headers={"ETag": etag, "Cache-Control": "no-cache"}
        )

    return handler


def add_static_routes(app: web.Application) -> list[dict[str, Any]]:
    """Serve the shipped files; return their Routes."""
    routes = []
    for path, (name, summary) in shipped().items():
        app.router.add_get(path, _file(name), allow_head=False)
        handler_name = "dashboard" if path == "/" else name.replace("/", "_").replace(".", "_")
        routes.append(route(path, "GET", handler_name, summary, summary, ["static"]))
    return routes
