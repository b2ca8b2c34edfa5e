"""The listening socket: aiohttp's TCP site, with a deadline on each new connection's first request.

aiohttp holds a connection that sends half a request for as long as its keep-alive timer allows
(an hour, or forever in older releases); thousands of those exhaust the process's descriptors
and with them every source's reads. ``GuardedSite`` wraps the server's protocol factory with
``guards.Handshakes`` so such a connection is dropped after ``[server] handshake_timeout``; with
TLS the handshake itself has that deadline too (asyncio's own default is 60 s).
Input errors aiohttp reports while parsing (an over-long request line, a reset peer) are logged
as one line, not as a traceback (``quiet_server_log``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .auth import redact
from .guards import Handshakes

SERVER_LOG = "broadcaster.server"


class GuardedSite(web.BaseSite):
    """A TCP site whose connections must send a whole request within the handshake timeout."""

    __slots__ = ("_handshakes", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        handshakes: Handshakes,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port, self._handshakes = host, port, handshakes

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("Call runner.setup() before starting a site")
        self._server = await asyncio.get_running_loop().create_server(
            self._handshakes.wrap(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            # A TLS handshake is part of the request that must come within the deadline.
            ssl_handshake_timeout=self._handshakes.timeout if self._ssl_context is not None else None,
        )


class InputErrors(logging.Filter):
    """Turn aiohttp's tracebacks for bad input (malformed requests, reset peers) into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError):
            record.msg = f"{record.msg}: %s"
            record.args = (*(record.args if isinstance(record.args, tuple) else ()), one_line(exc))
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def one_line(exc: BaseException) -> str:
    """Return aiohttp's complaint about a request as one line: what is wrong and the start of the line.

    Its message quotes the bytes it choked on, which for a request with bare-LF line endings is
    the whole head, headers (Authorization) included: only what comes before the first line end
    is kept, its ?token= masked, at most 300 characters.
    """
    parts = [part.strip() for part in str(exc).splitlines()]
    text = " ".join(part for part in parts if part and part.strip("^ "))
    return redact(re.split(r"\\r|\\n", text, maxsplit=1)[0][:300])


class LoopErrors:
    """An event-loop exception handler: running out of descriptors on accept() is one line a minute, not a traceback.

    asyncio already pauses accepting for a second and retries; the traceback says nothing more.
    Everything else goes to the default handler.
    """

    def __init__(self) -> None:
        self._last = float("-inf")
        self.count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self.count += 1
            if loop.time() - self._last >= 60:
                self._last = loop.time()
                logging.getLogger(SERVER_LOG).warning(
                    "cannot accept connections: %s (%d times so far; retrying)", exc, self.count
                )
            return
        loop.default_exception_handler(context)


def quiet_server_log() -> logging.Logger:
    """Return the logger for aiohttp's server protocol: bad input is one line at INFO, not a traceback."""
    log = logging.getLogger(SERVER_LOG)
    if not any(isinstance(f, InputErrors) for f in log.filters):
        log.addFilter(InputErrors())
    return log
