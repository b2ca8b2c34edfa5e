"""``--demo`` end to end in its own process: every channel moves, Ctrl-C exits clean."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import receive

FAMILIES = ("workflows", "routes", "workflow-history", "adw-monitor", "queue", "system-status", "webhook-status")


async def moved(session: aiohttp.ClientSession, url: str, timeout: float) -> bool:
    """Return whether the channel at ``url`` sends a real change within ``timeout`` after its snapshot."""
    async with session.ws_connect(url) as ws:
        first = await receive(ws)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await receive(ws, timeout)
                    if message["type"] == first["type"] and message["seq"] > first["seq"]:
                        return True
        except TimeoutError:
            return False


async def test_demo_moves_every_channel_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broadcaster",
            "--demo",
            "--demo-speed",
            "5",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
            port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
            assert "dashboard" in await asyncio.to_thread(proc.stdout.readline)  # the URL to open, first
            workspace = Path(
                re.search(
                    r"simulated agents in (\S+)",  # type: ignore[union-attr]
                    await asyncio.to_thread(proc.stdout.readline),
                ).group(1)
            )
            assert (workspace / "agents").is_dir()
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                results = await asyncio.gather(*(moved(session, f"{base}/api/v1/ws/{f}", 40) for f in FAMILIES))
                assert dict(zip(FAMILIES, results, strict=True)) == dict.fromkeys(FAMILIES, True)
                state_moved = False
                for _ in range(10):  # a run may end between picking it and connecting: pick another
                    async with session.get(f"{base}/api/v1/adw-monitor") as response:
                        running = [
                            w["adw_id"] for w in (await response.json())["workflows"] if w["status"] == "running"
                        ]
                    if running and await moved(session, f"{base}/ws/adw-state/{running[0]}", 5):
                        state_moved = True
                        break
                    await asyncio.sleep(0.5)
                assert state_moved
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not workspace.exists()
        assert "Traceback" not in proc.stderr.read()


def test_the_demo_keeps_its_events_out_of_the_configured_log(tmp_path: Path) -> None:
    from broadcaster.config import load_config
    from broadcaster.demo import demo_config

    config = load_config(None, env={}, cwd=tmp_path)
    demo = demo_config(config, tmp_path / "ws", "http://127.0.0.1:1")
    assert (config.event_log.path, demo.event_log.path) == (
        tmp_path / ".state" / "events.db",
        tmp_path / "ws" / "events.db",
    )
    assert (demo.server, demo.broadcast) == (config.server, config.broadcast)  # --host/--port are honoured
