"""The doors an attack run found open (issue 21), each tried again against a real service process.

The relay to the upstream obeys the service's own socket rules (frame size both ways, no
compression, origin policy, both connection limits, its own pool); only GET/HEAD /healthz are
open; the token never reaches the log however it is spelled; TLS handshakes have the handshake
deadline; a FIFO, device or directory at the event-log path is one line; hop-by-hop headers and the
token cookie (however spaced) stay here; a cookie from a foreign page is refused.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from yarl import URL

from tests.helpers import REPO, Service, eventually, make_certificate, raw_upgrade

TOKEN = "s3cret-t0ken"
MIB = 1024 * 1024


def config(workspace: Any, server: str = "", upstream: str = "") -> str:
    return (
        f'log_level = "debug"\n[server]\n{server}\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n'
        f"[adw]\nagents_dir = '{workspace.agents}'\ntrees_dir = '{workspace.trees}'\n[event_log]\npath = ''\n"
        f"[upstream]\n{upstream}\n"
    )


class Upstream:
    """A backend on 127.0.0.1: records what reaches it; /echo is a WebSocket that echoes, "big" sends 2 MiB."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.sockets = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def echo(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"path": request.path, "extensions": request.headers.get("Sec-WebSocket-Extensions")})
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.sockets += 1
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await ws.send_str("x" * (2 * MIB) if message.data == "big" else message.data)
        finally:
            self.sockets -= 1
        return ws

    async def record(self, request: web.Request) -> web.StreamResponse:
        if "X-Forwarded-For" not in request.headers:  # system status looking in, not a forwarded request
            return web.json_response({})
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )
        return web.json_response(
            {"from": "upstream"}, headers={"Connection": "keep-alive, X-Up-Hop", "X-Up-Hop": "1", "X-Kept": "1"}
        )

    async def __aenter__(self) -> Upstream:
        app = web.Application()
        app.router.add_get("/echo", self.echo)
        app.router.add_route("*", "/{tail:.*}", self.record)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with Upstream() as backend:
        yield backend


def rss(pid: int) -> int:
    """Return the resident memory of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def frame_header(length: int, *, rsv1: bool = False) -> bytes:
    """A masked client text frame's header (FIN set) for a payload of ``length`` bytes."""
    first = 0x81 | (0x40 if rsv1 else 0)
    if length < 126:
        return struct.pack("!BB", first, 0x80 | length) + b"\0\0\0\0"
    if length < 1 << 16:
        return struct.pack("!BBH", first, 0x80 | 126, length) + b"\0\0\0\0"
    return struct.pack("!BBQ", first, 0x80 | 127, length) + b"\0\0\0\0"


def upgraded(port: int, path: str) -> socket.socket:
    """A raw WebSocket to ``path``, its 101 answer read (the frames the test sends come after it)."""
    sock = raw_upgrade(port, path)
    sock.settimeout(5)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def close_code_after(port: int, data: bytes) -> int | None:
    """Open a relayed socket, send ``data`` on it, return the close code the service answers."""
    sock = upgraded(port, "/echo")
    try:
        send(sock, data)
        return read_close(sock)
    finally:
        sock.close()


def send(sock: socket.socket, data: bytes) -> None:
    """Send what the service takes of ``data`` (it may close the connection before the end)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_close(sock: socket.socket, timeout: float = 5.0) -> int | None:
    """Read frames until a close frame; return its code (None if the connection just ended)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            at = 0
            while at + 2 <= len(data):
                opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
                if opcode == 0x8 and at + 4 <= len(data):
                    return int(struct.unpack("!H", data[at + 2 : at + 4])[0])
                at += 2 + length
    except (TimeoutError, ConnectionResetError):
        pass
    return None


async def test_a_relayed_socket_takes_no_compression_and_no_frame_over_the_limit(workspace, upstream) -> None:
    service = await Service(
        workspace.root, config(workspace, f"max_message_size = {MIB}", f"url = '{upstream.url}'")
    ).start()
    try:
        before = rss(service.pid)
        async with aiohttp.ClientSession() as session:
            # Offered permessage-deflate: neither the client nor the upstream side gets it.
            async with session.ws_connect(service.url("/echo"), compress=15) as ws:
                assert ws.compress == 0
                await ws.send_str("hello")
                assert (await ws.receive(timeout=5)).data == "hello"
                await ws.send_str("big")  # the upstream answers 2 MiB: over the limit on the way back
                closing = await ws.receive(timeout=5)
                assert (closing.type, ws.close_code) == (WSMsgType.CLOSE, 1009)
        assert upstream.seen[0] == {"path": "/echo", "extensions": None}

        # A compressed frame (RSV1; 300 MB of zeros in 300 KB) on a socket that agreed to none: 1002.
        # (Blocking socket calls run in a thread: the upstream answers on this test's event loop.)
        deflate = zlib.compressobj(wbits=-15)
        payload = b"".join(deflate.compress(b"\0" * (10 * MIB)) for _ in range(30)) + deflate.flush(zlib.Z_SYNC_FLUSH)
        # The service answers on the header, so only its start is sent: bytes still arriving after the
        # close would make the kernel reset the connection and drop the close frame unread.
        compressed = frame_header(len(payload), rsv1=True) + payload[: 16 * 1024]
        assert await asyncio.to_thread(close_code_after, service.port, compressed) == 1002
        # A frame that says it is 400 MB: refused on its header alone, nothing of it held.
        assert await asyncio.to_thread(close_code_after, service.port, frame_header(400 * MIB)) == 1009
        assert rss(service.pid) - before < 100 * MIB
        await eventually(lambda: upstream.sockets == 0)  # each relay ended on both sides
    finally:
        await service.stop()


async def connect_once_free(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """Open a WebSocket as soon as the service has released a closed one's place (429 until then)."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await session.ws_connect(url)
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 429, exc
            await asyncio.sleep(0.05)


async def test_relays_count_in_both_connection_limits(workspace, upstream) -> None:
    limits = "max_connections_per_ip = 2\nmax_connections = 3"
    service = await Service(workspace.root, config(workspace, limits, f"url = '{upstream.url}'")).start()
    try:
        async with aiohttp.ClientSession() as session:
            held = [await session.ws_connect(service.url("/echo")) for _ in range(2)]
            for path in ("/echo", "/ws/queue"):  # a third relay, or an own socket: the address is full
                async with session.get(service.url(path), headers=UPGRADE) as refused:
                    assert refused.status == 429, path
            await held[0].close()
            held[0] = await connect_once_free(session, service.url("/ws/queue"))  # its place is free again
            await held[1].close()
            await eventually(lambda: upstream.sockets == 0)
            for ws in held:
                await ws.close()
    finally:
        await service.stop()


async def test_held_relays_never_starve_plain_proxied_requests(workspace, upstream) -> None:
    settings = "max_connections_per_ip = 1000"
    service = await Service(
        workspace.root, config(workspace, settings, f"url = '{upstream.url}'\nmax_relays = 100\ntimeout = 5")
    ).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            held = await asyncio.gather(*(session.ws_connect(service.url("/echo")) for _ in range(100)))
            await eventually(lambda: upstream.sockets == 100)
            async with session.get(service.url("/echo"), headers=UPGRADE) as over:
                assert (over.status, await over.json()) == (
                    503,
                    {"detail": "all 100 relays to the upstream are in use ([upstream] max_relays)"},
                )
            for n in range(5):  # the upstream pool of plain requests is untouched
                async with asyncio.timeout(3):
                    async with session.get(service.url(f"/api/v1/plain{n}")) as response:
                        assert (response.status, await response.json()) == (200, {"from": "upstream"})
            await asyncio.gather(*(ws.close() for ws in held))
    finally:
        await service.stop()


async def test_a_relay_obeys_the_origin_policy(workspace, upstream) -> None:
    service = await Service(workspace.root, config(workspace, upstream=f"url = '{upstream.url}'")).start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(service.url("/echo"), headers={**UPGRADE, "Origin": "http://evil.example"}) as no:
                assert (no.status, await no.json()) == (
                    403,
                    {"detail": "origin http://evil.example is not allowed (see [server] cors_origins)"},
                )
            own = f"http://127.0.0.1:{service.port}"
            async with session.ws_connect(service.url("/echo"), origin=own) as ws:
                await ws.send_str("mine")
                assert (await ws.receive(timeout=5)).data == "mine"
        assert [seen["path"] for seen in upstream.seen] == ["/echo"]  # the refused one never reached it
    finally:
        await service.stop()


async def test_only_get_and_head_healthz_are_open_and_other_methods_never_reach_the_upstream(
    workspace, upstream
) -> None:
    service = await Service(workspace.root, config(workspace, f"token = '{TOKEN}'", f"url = '{upstream.url}'")).start()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as session:
            for method in ("GET", "HEAD"):
                async with session.request(method, service.url("/healthz")) as response:
                    assert response.status == 200, method
            for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
                async with session.request(method, service.url("/healthz")) as response:
                    assert response.status == 401, method  # not open: the token is asked for
                async with session.request(method, service.url("/healthz"), headers=bearer) as response:
                    assert (response.status, response.headers["Allow"], await response.json()) == (
                        405,
                        "GET, HEAD",
                        {"detail": f"method {method} is not allowed on /healthz (allowed: GET, HEAD)"},
                    )
            async with session.post(service.url("/api/v1/queue"), headers=bearer) as response:
                assert (response.status, response.headers["Allow"]) == (405, "GET, HEAD")
        assert upstream.seen == []
    finally:
        await service.stop()


async def test_the_token_never_reaches_the_log_however_it_is_spelled(workspace) -> None:
    service = await Service(workspace.root, config(workspace, f"token = '{TOKEN}'")).start()
    encoded = "".join(f"%{b:02X}" for b in TOKEN.encode())
    try:
        async with aiohttp.ClientSession() as session:
            for query in (f"token={TOKEN}", f"%74oken={TOKEN}", f"%74%6F%6B%65%6E={encoded}", f"TOKEN={TOKEN}"):
                target = URL(service.url(f"/api/v1/queue?{query}"), encoded=True)  # sent as written
                async with session.get(target, allow_redirects=False) as response:
                    await response.read()
            async with session.get(service.url("/api/v1/queue"), headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
        # A request with bare LF line ends: aiohttp refuses it and quotes what it got.
        with socket.create_connection(("127.0.0.1", service.port)) as sock:
            sock.sendall(f"GET /api/v1/queue HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {TOKEN}\n\n".encode())
            assert sock.recv(12).startswith(b"HTTP/1.")
    finally:
        assert await service.stop() == 0
    log = service.log
    for query in ("token=***", "%74oken=***", "%74%6F%6B%65%6E=***", "TOKEN=***"):
        assert f'"GET /api/v1/queue?{query} HTTP/1.1"' in log, query
    for spelling in (TOKEN, encoded, encoded.lower(), TOKEN.upper()):
        assert spelling not in log, spelling
    assert "Authorization" not in log and "Host: 127.0.0.1" not in log  # a bad request is one line, no headers


async def test_a_half_open_tls_handshake_is_dropped_at_the_handshake_timeout(workspace) -> None:
    cert, key = make_certificate(workspace.root, "server")
    service = await Service(
        workspace.root, config(workspace, f"tls_cert = '{cert}'\ntls_key = '{key}'\nhandshake_timeout = 0.5")
    ).start()
    half: list[socket.socket] = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", service.port))
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
            sock.setblocking(False)
            half.append(sock)
        await eventually(lambda: all(_closed(s) for s in half), timeout=5)  # asyncio's own default: 60 s
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            async with session.get(service.url("/healthz", "https"), ssl=trust) as response:
                assert response.status == 200
    finally:
        for sock in half:
            sock.close()
        await service.stop()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("kind", ["a FIFO", "a directory", "a device"])
async def test_a_fifo_device_or_directory_at_the_event_log_path_is_one_line(workspace, kind: str) -> None:
    path = workspace.root / "events.db"
    if kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/null")  # a character device, reached the way a mistyped path would
    text = config(workspace).replace("[event_log]\npath = ''", f"[event_log]\npath = '{path}'")
    (workspace.root / "config.toml").write_text(text)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "broadcaster", "--config", str(workspace.root / "config.toml")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert (done.returncode, done.stderr) == (
        1,
        f"adw-broadcaster: cannot start: event log {path} is {kind}: [event_log] path must name a file of its own\n",
    )


async def test_headers_named_in_connection_and_the_token_cookie_stay_here(workspace, upstream) -> None:
    service = await Service(workspace.root, config(workspace, f"token = '{TOKEN}'", f"url = '{upstream.url}'")).start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            headers = {
                "Cookie": f"adw_broadcaster_token ={TOKEN}; theirs=1",  # a space before "=": the same cookie
                "Connection": "keep-alive, X-Hop-Secret",
                "X-Hop-Secret": "for this hop only",
            }
            async with session.get(service.url("/api/v1/thing"), headers=headers) as response:
                assert (response.status, await response.json()) == (200, {"from": "upstream"})
                assert "X-Up-Hop" not in response.headers and response.headers["X-Kept"] == "1"
        sent = upstream.seen[-1]["headers"]
        assert (sent["cookie"], "x-hop-secret" in sent, TOKEN in str(sent)) == ("theirs=1", False, False)
    finally:
        await service.stop()


async def test_a_page_from_another_origin_cannot_use_the_token_cookie(workspace, upstream) -> None:
    service = await Service(workspace.root, config(workspace, f"token = '{TOKEN}'", f"url = '{upstream.url}'")).start()
    cookie = {"Cookie": f"adw_broadcaster_token={TOKEN}"}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            # Another port of the same host is same-site: the browser sends the cookie along.
            for origin in (f"http://127.0.0.1:{service.port + 1}", "http://evil.example"):
                for path in ("/api/v1/queue", "/api/v1/create"):  # an own path and an upstream one
                    async with session.post(service.url(path), headers={**cookie, "Origin": origin}) as refused:
                        assert refused.status == 403, (origin, path)
                        assert (await refused.json())["detail"].startswith(f"origin {origin} ")
            own = f"http://127.0.0.1:{service.port}"
            async with session.post(service.url("/api/v1/create"), headers={**cookie, "Origin": own}) as response:
                assert response.status == 200
            async with session.get(service.url("/api/v1/queue"), headers=cookie) as response:  # no Origin: a read
                assert response.status == 200
        assert [seen["path"] for seen in upstream.seen] == ["/api/v1/create"]
    finally:
        await service.stop()


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
