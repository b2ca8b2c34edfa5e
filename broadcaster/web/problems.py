"""Errors the service answers itself, as JSON ``{"detail": "..."}`` (docs/protocol.md, "HTTP").

That is the shape FastAPI clients and the real React client's fetch helper read; a plain-text
404 made that client fail with "body stream already read" instead of showing the error. Handlers
return ``problem(...)`` or raise aiohttp's ``HTTPException`` with a ``text``; ``json_errors``
turns whatever is raised (the router's 404 and 405 too) into the JSON answer, headers kept
(``Allow`` on a 405).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """Return an error answer: ``status`` with ``{"detail": detail}``."""
    return web.json_response({"detail": detail}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every HTTP error raised while handling ``request`` with a JSON ``detail``."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return problem(exc.status, _detail(request, exc), headers=headers)


def _detail(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
    if isinstance(exc, web.HTTPNotFound) and exc.text in (None, "", "404: Not Found"):
        return f"no such path: {request.path[:200]}"
    text = exc.text or exc.reason
    prefix = f"{exc.status}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
