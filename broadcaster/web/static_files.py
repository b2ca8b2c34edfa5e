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

from ..channels.service_data import route
from ..errors import StartupError
from .http import Handler

TYPES = {".js": "text/javascript", ".ts": "application/typescript", ".css": "text/css", ".html": "text/html"}
DASHBOARD = "A part of the dashboard"
# Every served path, its file under static/ and a summary. Listed, not globbed: a file the
# package lacks is then a start-up error that names it, not a page that half loads.
FILES = {
    "/client.js": ("client.js", "The browser client: an ES module, no build step"),
    "/client.d.ts": ("client.d.ts", "TypeScript declarations of /client.js"),
    "/": ("dashboard/index.html", "The dashboard"),
    "/dashboard/alerts.js": ("dashboard/alerts.js", DASHBOARD),
    "/dashboard/app.js": ("dashboard/app.js", DASHBOARD),
    "/dashboard/dashboard.css": ("dashboard/dashboard.css", DASHBOARD),
    "/dashboard/detail.js": ("dashboard/detail.js", DASHBOARD),
    "/dashboard/format.js": ("dashboard/format.js", DASHBOARD),
    "/dashboard/monitor.js": ("dashboard/monitor.js", DASHBOARD),
    "/dashboard/panels.js": ("dashboard/panels.js", DASHBOARD),
}


def read_shipped(name: str) -> bytes:
    """Return the bytes of ``static/{name}``; ``StartupError`` naming it when the package lacks it."""
    try:
        return resources.files(__package__).joinpath("static", *name.split("/")).read_bytes()
    except OSError as exc:
        where = resources.files(__package__).joinpath("static")
        raise StartupError(
            f"{where}/{name}: a file the service serves is missing from the installed package "
            f"({exc.strerror or exc}); reinstall adw-broadcaster"
        ) from exc


def content_type(name: str) -> str:
    """Return the media type a shipped file is served as."""
    return TYPES[name[name.rindex(".") :]]


def _file(name: str) -> Handler:
    body = read_shipped(name)
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
    for path, (name, summary) in FILES.items():
        app.router.add_get(path, _file(name), allow_head=False)
        handler_name = "dashboard" if path == "/" else name.replace("/", "_").replace(".", "_")
        routes.append(route(path, "GET", handler_name, summary, summary, ["static"]))
    return routes
