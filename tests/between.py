"""A server the test controls, between a client and a real service: the network's bad moments on demand.

``Between`` serves ``{prefix}/ws`` (relayed to the service's ``/ws``) and ``{prefix}/api/v1/...``
(fetched from the service, with CORS for pages of another origin). The test can refuse upgrades
(``down``), cut the sockets (``cut``), drop frames the service sends (``drop``), and hold HTTP
answers after their headers (``hold``: the body comes when the event is set, with the data the
service had when the request came). What passed each way is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Expose-Headers": "ETag",
}


class Between:
    def __init__(self, service_port: int, prefix: str = "") -> None:
        self.service = f"http://127.0.0.1:{service_port}"
        self.prefix = prefix
        self.down = False
        self.drop: Callable[[dict[str, Any]], bool] | None = None
        self.hold: asyncio.Event | None = None
        self.sent: list[dict[str, Any]] = []  # client -> service frames
        self.received: list[dict[str, Any]] = []  # service -> client frames passed on
        self.polls: list[str] = []  # paths of the HTTP requests that reached it
        self.upgrades = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> Between:
        app = web.Application()
        app.router.add_get(f"{self.prefix}/ws", self._relay)
        app.router.add_route("*", f"{self.prefix}/api/v1/{{tail:.*}}", self._http)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}{self.prefix}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        await self.cut()
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def cut(self) -> None:
        """Close every relayed socket (as a lost network does, with no close from the service)."""
        for ws in list(self._sockets):
            await ws.close(code=1012)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.json_response({"detail": "down"}, status=503)
        assert self._session is not None
        self.upgrades += 1
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        self._sockets.add(client)
        try:
            async with self._session.ws_connect(f"{self.service}/ws?{request.query_string}", max_msg_size=0) as up:
                pump = asyncio.create_task(self._to_client(up, client))
                try:
                    async for message in client:
                        if message.type is WSMsgType.TEXT:
                            self.sent.append(orjson.loads(message.data))
                            await up.send_str(message.data)
                finally:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pump
        finally:
            self._sockets.discard(client)
        return client

    async def _to_client(self, up: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse) -> None:
        async for message in up:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = orjson.loads(message.data)
            if self.drop is not None and self.drop(frame):
                continue
            self.received.append(frame)
            await client.send_str(message.data)

    async def _http(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=CORS)
        assert self._session is not None
        self.polls.append(request.path)
        headers = {k: v for k, v in request.headers.items() if k in ("If-None-Match", "Authorization")}
        async with self._session.get(f"{self.service}{request.path_qs[len(self.prefix) :]}", headers=headers) as got:
            body, status, etag = await got.read(), got.status, got.headers.get("ETag")
        answer = web.StreamResponse(status=status, headers={**CORS, "Content-Type": "application/json"})
        if etag:
            answer.headers["ETag"] = etag
        await answer.prepare(request)  # the headers go now; the body waits for the test (data as of now)
        if self.hold is not None:
            await self.hold.wait()
        with contextlib.suppress(ConnectionError):
            await answer.write(body)
            await answer.write_eof()
        return answer
