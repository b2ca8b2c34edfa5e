"""Helpers for tests that run the real service as a process and talk to it over raw sockets."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parents[1]
UPGRADE_REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def free_port() -> int:
    """Return a loopback port that was free a moment ago (for a server that cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def service_command(hide: tuple[str, ...] = ()) -> list[str]:
    """Return the command that runs ``adw-broadcaster`` from this checkout, ``hide`` made unimportable."""
    if not hide:
        return [sys.executable, "-m", "broadcaster"]
    # A None in sys.modules makes `import name` raise ImportError, as if it were not installed.
    script = f"import sys; sys.modules.update(dict.fromkeys({list(hide)!r})); from broadcaster.cli import main; "
    return [sys.executable, "-c", script + "sys.exit(main(sys.argv[1:]))"]


class Service:
    """``adw-broadcaster --config`` as a child process; stderr is collected as it comes.

    Args:
        root: the working directory; ``config.toml`` is written there.
        config: the TOML text (``port = 0`` is added to ``[server]`` unless it sets a port).
        preexec: run in the child before the service starts (e.g. to lower a resource limit).
        hide: packages the child cannot import, as on a machine without them (e.g. ``uvloop``).
    """

    def __init__(
        self, root: Path, config: str, *, preexec: Callable[[], None] | None = None, hide: tuple[str, ...] = ()
    ) -> None:
        self.root = root
        self.config_path = root / "config.toml"
        if "port" not in config:
            config = (
                config.replace("[server]\n", "[server]\nport = 0\n")
                if "[server]" in config
                else ("[server]\nport = 0\n" + config)
            )
        self.config_path.write_text(config)
        self._preexec = preexec
        self._hide = hide
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.stderr: list[str] = []
        self._reader: threading.Thread | None = None

    async def start(self, timeout: float = 20.0) -> Service:
        self.proc = subprocess.Popen(
            [*service_command(self._hide), "--config", str(self.config_path)],
            cwd=self.root,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=self._preexec,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._reader = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True)
        self._reader.start()
        banner = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        match = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", banner)
        assert match, f"no banner: {banner!r}; stderr: {''.join(self.stderr)}"
        self.port = int(match.group(1))
        threading.Thread(target=self._drain, args=(self.proc.stdout, []), daemon=True).start()
        return self

    def _drain(self, stream: Any, into: list[str] | None = None) -> None:
        sink = self.stderr if into is None else into
        try:
            for line in stream:
                sink.append(line)
        finally:
            stream.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    def socket_count(self) -> int:
        """Return how many sockets the service process holds open (listening one included)."""
        fds = Path(f"/proc/{self.pid}/fd")
        count = 0
        for fd in fds.iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:
                pass
        return count


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    """Wait until ``predicate()`` is true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def raw_upgrade(port: int, path: str, *, rcvbuf: int | None = None) -> socket.socket:
    """Open a WebSocket the way a browser would, over a raw socket that the test controls byte by byte."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(UPGRADE_REQUEST.format(path=path).encode())
    return sock


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """Encode one masked client frame (payloads up to 125 bytes: control frames and small texts)."""
    assert len(payload) <= 125
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_queue_bytes(port: int) -> int:
    """Return the bytes the kernel holds unsent on the server side of connections to ``port`` (IPv4)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, queues = fields[1], fields[4]
        if int(local.split(":")[1], 16) == port:
            total += int(queues.split(":")[0], 16)
    return total


def service_config(workspace: Any, port: int) -> str:
    """A service on ``port`` over ``workspace``: no throttle, heartbeats every 0.5 s, requests logged."""
    return (
        f'log_level = "debug"\n[server]\nport = {port}\nheartbeat_interval = 0.5\n'
        "[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        f"[adw]\nagents_dir = '{workspace.agents}'\ntrees_dir = '{workspace.trees}'\n"
        f"[event_log]\npath = '{workspace.root / 'events.db'}'\n"
    )
