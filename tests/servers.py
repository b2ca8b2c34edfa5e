"""Real servers the tests start on free loopback ports and stop: redis-server, PostgreSQL, an alert receiver."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from tests.helpers import free_port


class RedisServer:
    """``redis-server`` on a free loopback port, in a directory of its own, nothing persisted."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.from_url(self.url)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await client.ping()
                        return self
                    except (OSError, aioredis.ConnectionError):
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=None)  # Debian's postgresql package
PG_PASSWORD = "pg-super-s3cret"


class PostgresServer:
    """A PostgreSQL cluster made with ``initdb`` in a temp dir, run as the ``postgres`` user on a free port.

    Password authentication over TCP (scram-sha-256); the superuser is ``postgres`` with
    ``PG_PASSWORD``. Nothing is synced to disk; everything goes with ``stop``.
    """

    def __init__(self) -> None:
        if PG_BIN is None:
            raise RuntimeError("Debian's postgresql is not installed: run tests/system-packages.sh")
        self.directory = Path(tempfile.mkdtemp(prefix="adwb-pg-"))
        self.port = free_port()
        self.proc_log = self.directory / "server.log"
        shutil.chown(self.directory, "postgres", "postgres")

    def _run(self, *argv: str) -> None:
        assert PG_BIN is not None  # checked in __init__
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def url(self, user: str = "postgres", password: str = PG_PASSWORD, database: str = "postgres") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    async def start(self) -> PostgresServer:
        pwfile = self.directory / "pw"
        pwfile.write_text(PG_PASSWORD)
        shutil.chown(pwfile, "postgres", "postgres")
        data = self.directory / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "-E", "UTF8", "--no-sync")
        (data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )  # written as root: the server only reads it
        self.start_server()
        return self

    def start_server(self) -> None:
        """Start the cluster's server (again, after ``stop_server``)."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-o", options, "-l", str(self.proc_log), "-w", "start")

    def stop_server(self) -> None:
        """Stop the server, keeping the cluster (``start_server`` brings it back)."""
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    async def sql(self, *statements: str, database: str = "postgres") -> None:
        """Run ``statements`` as the superuser, each committed."""
        import asyncpg

        conn = await asyncpg.connect(self.url(database=database))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def stop(self) -> None:
        data = self.directory / "data"
        if data.exists():
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass  # never started, or stopped by the test
        shutil.rmtree(self.directory, ignore_errors=True)


class Receiver:
    """An HTTP server recording what Apprise's json:// plugin posts to it."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        async def hook(request: web.Request) -> web.Response:
            self.got.append(await request.json())
            return web.json_response({})

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
