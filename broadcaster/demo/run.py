"""Run the service on simulated agents in a temporary workspace; remove it on the way out."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Protocol

from aiohttp import web

from sources.tasks import cancel_and_wait

from ..config import CheckConfig, Config
from .agents import REPO, Agents
from .backend import Backend


def demo_config(config: Config, root: Path, backend_url: str) -> Config:
    """Return ``config`` pointed at the demo workspace and its fake backend (server settings kept)."""
    return dataclasses.replace(
        config,
        adw=dataclasses.replace(
            config.adw, agents_dir=root / "agents", trees_dir=root / "trees", github_repo=REPO, trees_poll_interval=1.0
        ),
        database=dataclasses.replace(config.database, path=root / "db" / "database.db", history_path=None),
        webhook=dataclasses.replace(config.webhook, status_url=f"{backend_url}/webhook-status", poll_interval=1.0),
        routes=dataclasses.replace(config.routes, openapi_url=f"{backend_url}/openapi.json", poll_interval=2.0),
        system_status=dataclasses.replace(
            config.system_status, poll_interval=1.0, checks=(CheckConfig(name="frontend", url=f"{backend_url}/health"),)
        ),
        # The demo's history is its own: mixing it into a real log would interleave two histories.
        event_log=dataclasses.replace(config.event_log, path=root / "events.db"),
    )


class Serve(Protocol):
    """How the CLI serves a configuration until SIGINT or SIGTERM (``cli.serve``)."""

    async def __call__(self, config: Config, *, demo_workspace: Path, tls: ssl.SSLContext | None) -> None: ...


async def run_demo(config: Config, serve: Serve, *, speed: float = 1.0, tls: ssl.SSLContext | None = None) -> None:
    """Serve ``config`` on simulated agents until SIGINT or SIGTERM, then remove the workspace.

    Args:
        config: the configuration; its server settings (host, port, ...) are used as they are.
        serve: what serves it (the CLI's ``serve``: the demo never imports the CLI that starts it).
        speed: how much faster than the default pace the simulated agents work.
        tls: the server's TLS context, if it serves https.
    """
    root = Path(tempfile.mkdtemp(prefix="adw-broadcaster-demo-"))
    backend = Backend()
    runner = web.AppRunner(backend.app(), access_log=None)
    try:
        agents = Agents(root, backend, speed=speed, rng=random.Random())
        await asyncio.to_thread(agents.create)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        simulation = asyncio.create_task(agents.run(), name="demo agents")
        try:
            await serve(demo_config(config, root, f"http://127.0.0.1:{port}"), demo_workspace=root, tls=tls)
        finally:
            await cancel_and_wait(simulation)
    finally:
        await runner.cleanup()
        # The simulated agents write in worker threads that a cancelled task does not stop: let
        # them finish, or one may recreate a file in the workspace while it is being removed.
        await asyncio.get_running_loop().shutdown_default_executor()
        shutil.rmtree(root, ignore_errors=True)
