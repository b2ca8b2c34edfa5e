"""Operating it: the token, TLS, connection limits, /healthz, the start-up line (real processes)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import receive
from tests.helpers import REPO, TOKEN, Service, make_certificate
from tests.helpers import operate_config as config


async def answer(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


async def test_the_token_guards_every_request_but_healthz(workspace, write_state) -> None:
    write_state("a1", step=0)
    (workspace.root / "token").write_text(f"{TOKEN}\n  \n")  # trailing whitespace is stripped
    service = await Service(workspace.root, config(workspace, f"token_file = '{workspace.root / 'token'}'")).start()
    refused = {"detail": "a valid token is required: Authorization: Bearer <token>, or ?token= (see [server] token)"}
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as session:  # browsers keep IPs' cookies
            url = service.url("/api/v1/adw-state/a1")
            assert await answer(session, url) == (401, refused)
            assert await answer(session, url, headers={"Authorization": ""}) == (401, refused)
            assert await answer(session, url, headers={"Authorization": f"Bearer {TOKEN}x"}) == (401, refused)
            assert await answer(session, url, headers={"Authorization": f"Basic {TOKEN}"}) == (401, refused)
            wrong_header = {"Authorization": "Bearer nope"}  # the header wins over a right ?token=
            assert await answer(session, f"{url}?token={TOKEN}", headers=wrong_header) == (401, refused)
            assert await answer(session, url, headers=bearer) == (200, {"adw_id": "a1", "step": 0})
            assert await answer(session, f"{url}?token={TOKEN}") == (200, {"adw_id": "a1", "step": 0})
            assert await answer(session, service.url("/healthz")) == (200, {"status": "ok"})
            assert (await answer(session, service.url("/")))[0] == 401  # the dashboard too

            with pytest.raises(aiohttp.WSServerHandshakeError) as no_token:
                await session.ws_connect(service.url("/ws/adw-state/a1"))
            assert no_token.value.status == 401
            async with session.ws_connect(service.url(f"/ws/adw-state/a1?token={TOKEN}")) as ws:
                assert (await receive(ws))["data"] == {"adw_id": "a1", "step": 0}
            async with session.ws_connect(service.url("/ws?channels=adw-state:a1"), headers=bearer) as ws:
                assert (await receive(ws))["type"] == "subscribed"

            # The dashboard opened with ?token= sets a cookie its own modules and socket then carry.
            async with session.get(service.url(f"/?token={TOKEN}")) as page:
                assert page.status == 200
                cookie = page.headers["Set-Cookie"]
            assert cookie.startswith(f"adw_broadcaster_token={TOKEN};") and "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert (await answer(session, service.url("/dashboard/app.js")))[0] == 200  # the cookie jar sends it
    finally:
        await service.stop()
    log = service.log
    assert "token=***" in log and TOKEN not in log  # the access log never shows it
    assert "; token on; TLS off; event loop " in log


async def start_once(workspace: Any, setting: str) -> subprocess.CompletedProcess[str]:
    """Run the service on a config with ``setting`` in [server]; it is expected to refuse to start."""
    (workspace.root / "config.toml").write_text(config(workspace, setting))
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "broadcaster", "--config", str(workspace.root / "config.toml")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


async def test_a_token_file_that_cannot_be_read_is_one_line_without_the_token(workspace) -> None:
    for setting, expected in [
        (
            f"token_file = '{workspace.root / 'missing'}'",
            f"[server] token_file: cannot read {workspace.root / 'missing'}",
        ),
        (f"token = '{TOKEN}'\ntoken_file = 'x'", "[server] token_file: set token or token_file, not both"),
    ]:
        done = await start_once(workspace, setting)
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert expected in line and TOKEN not in line


async def test_the_token_is_never_forwarded_to_the_upstream(start) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path_qs, dict(request.headers)))
        return web.json_response({"ok": True})

    backend = web.Application()
    backend.router.add_route("*", "/{tail:.*}", record)
    async with TestServer(backend, host="127.0.0.1") as upstream:
        client = await start(server__token=TOKEN, upstream__url=str(upstream.make_url("")))
        own = {"Authorization": "Basic dXBzdHJlYW0=", "Cookie": "theirs=1"}
        response = await client.get(f"/api/plans?page=2&token={TOKEN}", headers=own)
        assert response.status == 200
        response = await client.get("/api/plans", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
        assert (await client.get("/api/plans")).status == 401  # the upstream's paths need the token too
    (path, headers), (path2, headers2) = [s for s in seen if s[0].startswith("/api/plans")]  # (not the status polls)
    assert (path, headers["Authorization"], headers["Cookie"]) == (
        "/api/plans?page=2",
        "Basic dXBzdHJlYW0=",
        "theirs=1",
    )
    assert path2 == "/api/plans" and "Authorization" not in headers2
    assert TOKEN not in str(seen)


async def test_tls_serves_https_and_wss_on_the_same_port(workspace, write_state) -> None:
    write_state("a1", step=0)
    cert, key = make_certificate(workspace.root, "server")
    service = await Service(workspace.root, config(workspace, f"tls_cert = '{cert}'\ntls_key = '{key}'")).start()
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        async with aiohttp.ClientSession() as session:
            assert await answer(session, service.url("/healthz", "https"), ssl=trust) == (200, {"status": "ok"})
            async with session.ws_connect(service.url("/ws/adw-state/a1", "wss"), ssl=trust) as ws:
                assert (await receive(ws))["data"] == {"adw_id": "a1", "step": 0}
            with pytest.raises(aiohttp.ClientConnectorError):  # a client that does not trust it
                await answer(session, service.url("/healthz", "https"))
    finally:
        await service.stop()
    assert "; token off; TLS on; event loop " in service.log


async def test_unusable_tls_files_stop_start_up_in_one_line(workspace) -> None:
    cert, _ = make_certificate(workspace.root, "one")
    _, other_key = make_certificate(workspace.root, "two")
    for setting, expected in [
        (f"tls_cert = '{cert}'\ntls_key = '{other_key}'", "the key does not match the certificate"),
        (f"tls_cert = '{cert}'\ntls_key = '{workspace.root / 'none.key'}'", "[server] tls_key: cannot read"),
        (f"tls_cert = '{cert}'", "[server] tls_key: tls_cert and tls_key go together"),
    ]:
        done = await start_once(workspace, setting)
        assert (done.returncode, len(done.stderr.splitlines())) == (2, 1), done.stderr
        assert expected in done.stderr


async def test_connection_limits_refuse_with_503_and_429(workspace) -> None:
    service = await Service(
        workspace.root, config(workspace, "max_connections = 3\nmax_connections_per_ip = 2")
    ).start()
    try:
        async with aiohttp.ClientSession() as session:
            first = [await session.ws_connect(service.url("/ws/queue")) for _ in range(2)]
            async with session.get(service.url("/ws/queue"), headers=UPGRADE_HEADERS) as over:
                assert (over.status, await over.json()) == (
                    429,
                    {"detail": "at most 2 connections per address ([server] max_connections_per_ip)"},
                )
            await first[0].close()  # a place frees up
            again = await session.ws_connect(service.url("/ws/queue"))
            for ws in (first[1], again):
                await ws.close()
    finally:
        await service.stop()
    assert service.log.count("refused 1 connection(s) over a limit") == 1

    service = await Service(workspace.root, config(workspace, "max_connections = 2")).start()
    try:
        async with aiohttp.ClientSession() as session:
            held = [await session.ws_connect(service.url("/ws/queue")) for _ in range(2)]
            for _ in range(3):
                async with session.get(service.url("/ws/queue"), headers=UPGRADE_HEADERS) as over:
                    assert over.status == 503
                    assert (await over.json())["detail"].startswith("the service holds its maximum of 2 connections")
            for ws in held:
                await ws.close()
    finally:
        await service.stop()
    assert service.log.count("over a limit") == 1  # three refusals, one line


UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


async def test_healthz_says_503_when_the_event_loop_stalls(start) -> None:
    from broadcaster.web.healthz import WATCH

    client = await start()
    assert (await client.get("/healthz")).status == 200
    client.app[WATCH].stalled_after = 0.3
    time.sleep(1.5)  # the event loop (the app's too) does not turn: what a stuck handler does
    response = await client.get("/healthz")
    assert response.status == 503
    assert (await response.json())["detail"].startswith("the event loop did not turn for ")


def test_the_start_line_and_the_warning_for_a_public_address_without_a_token(make_config, caplog) -> None:
    from broadcaster.cli import log_start

    runner = web.AppRunner(web.Application())  # not started: the configured address is reported
    caplog.set_level("INFO", logger="broadcaster")
    log_start(make_config(server__host="0.0.0.0", server__port=8002), runner, tls=False, token=False, loop="asyncio")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("adw-broadcaster 0.1.0 on http://0.0.0.0:8002; agents ")
    assert lines[0].endswith("; token off; TLS off; event loop asyncio")
    assert lines[1].startswith("listening on 0.0.0.0 without a token: anyone who reaches the port reads")
    caplog.clear()
    log_start(make_config(server__host="0.0.0.0", server__port=8002), runner, tls=True, token=True, loop="uvloop 1")
    ends = [r.getMessage().endswith("; token on; TLS on; event loop uvloop 1") for r in caplog.records]
    assert ends == [True]  # no warning
