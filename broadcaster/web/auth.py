"""The token (``[server] token`` / ``token_file``): required of every request but ``/healthz``.

A request carries it as ``Authorization: Bearer <token>``, or as ``?token=`` (browsers cannot set
headers on a WebSocket); when both are there the header wins. An Authorization of another
scheme (``Basic``) is taken to be the upstream's and passed on. Opening the dashboard with
``/?token=...`` also sets an HttpOnly, SameSite=Strict cookie, so the page's own modules, fetches
and socket carry it without repeating it in every URL. Compared in constant time; never logged
(the access log shows ``token=***``) and never forwarded to the upstream.
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDict
from yarl import URL

from ..config import ServerConfig
from ..errors import ConfigError
from .origins import cookie_allowed
from .problems import Handler, problem

TOKEN_KEY = web.AppKey("token", bytes)
COOKIE = "adw_broadcaster_token"
OPEN_PATHS = frozenset({"/healthz"})
OPEN_METHODS = frozenset({"GET", "HEAD"})


def load_token(server: ServerConfig) -> bytes:
    """Return the configured token (b"" when none); raise ConfigError naming the key if it cannot be read."""
    if server.token_file is None:
        return server.token.strip().encode()
    try:
        text = server.token_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"[server] token_file: cannot read {server.token_file}: {reason}") from None
    token = text.strip()
    if not token:
        raise ConfigError(f"[server] token_file: {server.token_file} is empty")
    return token.encode()


def presented(request: web.Request) -> tuple[str, str]:
    """Return the token a request carries and where it came from (header, query, cookie, or none)."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":  # the header wins, even when a query token is there too
        return value.strip(), "header"
    # Another scheme (Basic ...) is a credential for the upstream, not for us: look further.
    if "token" in request.query:
        return request.query["token"], "query"
    cookie = request.cookies.get(COOKIE)
    if cookie is not None:
        return cookie, "cookie"
    return "", "none"


@web.middleware
async def token_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 401 before any data or upgrade unless the request carries the token."""
    token = request.app[TOKEN_KEY]
    if not token or request.path in OPEN_PATHS and request.method in OPEN_METHODS:
        return await handler(request)
    given, where = presented(request)
    if not hmac.compare_digest(given.encode(), token):
        detail = "a valid token is required: Authorization: Bearer <token>, or ?token= (see [server] token)"
        answer = problem(401, detail)
        answer.headers["WWW-Authenticate"] = 'Bearer realm="adw-broadcaster"'
        return answer
    origin = request.headers.get("Origin")
    if where == "cookie" and origin is not None and not cookie_allowed(request, origin):
        # The browser sends the cookie with any page's request to this host (SameSite ignores
        # ports), also to paths the origin policy leaves to the upstream: refuse foreign pages here.
        detail = f"origin {origin[:100]} may not use the token cookie (only pages named in [server] cors_origins)"
        return problem(403, detail)
    response = await handler(request)
    if where == "query" and request.path == "/" and not response.prepared:
        response.set_cookie(COOKIE, given, httponly=True, samesite="Strict", path="/", secure=request.secure)
    return response


def strip_token(request: web.Request, headers: CIMultiDict[str], target: URL) -> tuple[CIMultiDict[str], URL]:
    """Return what a proxied request forwards, without this service's token (header, query, cookie)."""
    token = request.app[TOKEN_KEY]
    if not token:
        return headers, target
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token):
        del headers["Authorization"]  # another Authorization is the upstream's own: it goes on
    if COOKIE in request.cookies:
        kept = [c.strip() for c in headers.get("Cookie", "").split(";") if c.strip()]
        kept = [c for c in kept if c.partition("=")[0].strip() != COOKIE]  # "name =value" is the same cookie
        headers.popall("Cookie", None)
        if kept:
            headers["Cookie"] = "; ".join(kept)
    if "token" in request.query:
        rest = [(k, v) for k, v in request.query.items() if k != "token"]
        target = target.with_query(rest or None)
    return headers, target


def redact(text: str) -> str:
    """Return a request target with the value of every query key that reads ``token`` (``%74oken`` too) as ***."""
    path, mark, query = text.partition("?")
    if not mark:
        return text
    parts = []
    for pair in query.split("&"):
        key, eq, _ = pair.partition("=")
        parts.append(f"{key}=***" if eq and unquote_plus(key).strip().lower() == "token" else pair)
    return f"{path}?{'&'.join(parts)}"


class TokenScrubber(logging.Filter):
    """Replace the token in every log record, however it is spelled: raw or percent-encoded, any case.

    Installed on the log handlers (``cli``), so it sees every line of every logger (aiohttp's
    too) at every level: whatever a message quotes (a request line, a header, an exception),
    the token is never written.
    """

    def __init__(self, token: bytes) -> None:
        super().__init__()
        text = token.decode(errors="replace")
        # Each character as itself or as any %XX of its UTF-8 bytes (hex in either case).
        parts = []
        for char in text:
            escaped = "".join(f"%{b:02x}" for b in char.encode())
            parts.append(f"(?:{re.escape(char)}|{re.escape(escaped)})")
        self._pattern = re.compile("".join(parts), re.IGNORECASE) if text else None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()
        scrubbed = self._pattern.sub("***", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._pattern.sub("***", record.exc_text)
        return True


class AccessLog(AbstractAccessLogger):
    """One line per request (with --log-level debug), the token in a query shown as ***."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.3fs',
            request.remote,
            request.method,
            redact(request.path_qs),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
