"""Start and stop: sockets hear 1001 before sources stop, every task ends, SIGTERM exits fast."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from broadcaster import create_app
from tests.agents_db import AgentsDb
from tests.conftest import receive
from tests.helpers import Service, eventually, operate_config

OUR_TASKS = re.compile(r"pipeline|adw files|watch .*|writer .*|database .*|hint .*|(webhook|openapi|checks) poll")


def our_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if OUR_TASKS.fullmatch(t.get_name()) and not t.done()]


async def test_shutdown_closes_sockets_with_1001_then_stops_sources(make_config, write_state, workspace) -> None:
    write_state("a1", step=0)
    AgentsDb(workspace.root / "agents.db").create()
    nowhere = "http://127.0.0.1:9/"  # refused: the pollers run and fail, which is all this test needs
    config = make_config(
        database__path=str(workspace.root / "agents.db"),
        webhook__status_url=nowhere,
        routes__openapi_url=nowhere,
        system_status__checks=[{"name": "x", "url": nowhere}],
    )
    app = create_app(config)
    events: list[tuple[str, object]] = []

    async def after_close_sockets(app: web.Application) -> None:
        events.append(("sockets closed", sorted(t.get_name() for t in our_tasks() if t.get_name() != "pipeline")))

    async def outermost(app: web.Application):
        yield
        events.append(("cleanup done", our_tasks()))

    async def innermost(app: web.Application):
        yield
        events.append(("cleanup starts", None))

    app.on_shutdown.append(after_close_sockets)
    app.cleanup_ctx.insert(0, outermost)  # torn down last
    app.cleanup_ctx.append(innermost)  # torn down first
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.make_url("/ws/adw-state/a1"))
        assert (await receive(ws))["seq"] == 1
        closing = asyncio.create_task(server.close())
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "server shutdown")
        await asyncio.wait_for(closing, 5)
    assert events == [
        (
            "sockets closed",
            [  # every source still running
                "adw files",
                "checks poll",
                "database agents.db",
                "hint agents.db",
                "openapi poll",
                f"watch {config.adw.agents_dir}",
                "webhook poll",
            ],
        ),
        ("cleanup starts", None),
        ("cleanup done", []),  # every task created was cancelled and awaited
    ]


async def test_sigterm_closes_clients_and_exits_within_two_seconds(workspace, write_state) -> None:
    write_state("a1", step=0)
    config = workspace.root / "config.toml"
    config.write_text('[server]\nport = 0\n[adw]\nagents_dir = "agents"\ntrees_dir = "trees"\n')
    with subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=workspace.root,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
            port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://127.0.0.1:{port}/api/v1/ws/adw-state/a1")
                assert (await receive(ws))["data"] == {"adw_id": "a1", "step": 0}
                sent_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                msg = await ws.receive(timeout=5)
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
                code = await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
                assert (code, time.monotonic() - sent_at < 2.0) == (0, True)
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr
        # uvloop, a dependency, runs the service (see test_install for a platform without it).
        assert re.search(r"; event loop uvloop \d", stderr) is not None


async def test_usr1_writes_every_threads_stack_and_the_service_goes_on(workspace) -> None:
    """``kill -USR1`` is how a service that seems stuck, or will not stop, tells where it is."""
    service = await Service(workspace.root, operate_config(workspace)).start()
    try:
        os.kill(service.pid, signal.SIGUSR1)
        await eventually(lambda: "(most recent call first)" in service.log)
        assert re.search(r'File ".*broadcaster/cli\.py", line \d+ in (main|run)', service.log), service.log
        async with aiohttp.ClientSession() as session, session.get(service.url("/healthz")) as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
    finally:
        assert await service.stop(signal.SIGINT) == 0
