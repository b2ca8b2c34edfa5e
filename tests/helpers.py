"""Helpers for tests that run the real service as a process and talk to it over raw sockets."""

from __future__ import annotations

import asyncio
import inspect
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
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from playwright.async_api import Page

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
        """Send ``sig`` and wait for the exit code; one that does not exit in time is killed and the test fails."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(asyncio.to_thread(self.proc.wait, timeout), timeout + 1)
        except (subprocess.TimeoutExpired, TimeoutError):
            self.kill()  # never left running: the test run would wait for it at exit
            raise AssertionError(f"the service did not exit within {timeout}s of signal {sig}") from None
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


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Wait until ``check()`` (plain or async) is truthy and return it; fail the test after ``timeout`` seconds.

    The one way tests wait for something: never a fixed sleep. (In a browser page, ``in_page``.)
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def in_page(page: Page, expression: str, arg: Any = None, timeout: float = 10.0) -> Any:
    """Wait until the JavaScript ``expression`` is truthy in ``page``; return its value."""
    handle = await page.wait_for_function(expression, arg=arg, timeout=timeout * 1000, polling=20)
    return await handle.json_value()


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


TOKEN = "s3cret-t0ken"


def operate_config(workspace: Any, server: str = "") -> str:
    """A service config for the operations tests: debug log, no throttle, no webhook, no event log."""
    return (
        f'log_level = "debug"\n[server]\n{server}\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ""\n'
        f"[adw]\nagents_dir = '{workspace.agents}'\ntrees_dir = '{workspace.trees}'\n[event_log]\npath = ''\n"
    )


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


WEBHOOK: dict[str, Any] = {
    "status": "healthy",
    "uptime": 12.5,
    "stats": {"total_received": 3, "successful": 3, "failed": 0, "success_rate": 100.0},
    "recent_failures": [],
    "last_successful": "2026-11-25T10:00:00",
}


def json_app(routes: dict[str, Any]) -> web.Application:
    """A small service answering each path with the JSON currently in ``routes``."""
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        body = routes[request.path]
        if isinstance(body, int):
            return web.Response(status=body)
        return web.json_response(body)

    for path in list(routes):
        app.router.add_get(path, answer)
    return app


def server_frames(data: bytes) -> list[dict[str, Any]]:
    """Decode the unmasked text frames a server wrote (payloads under 64 KiB)."""
    frames, at = [], 0
    while at < len(data):
        length, at = data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        frames.append(orjson.loads(data[at : at + length]))
        at += length
    return frames


def save_state(agents: Path, adw_id: str, **fields: Any) -> Path:
    """Save an ADW's state file the way agents do (temp file, then rename); return its path."""
    directory = agents / adw_id
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".adw_state.json.tmp"
    tmp.write_bytes(orjson.dumps({"adw_id": adw_id, **fields}))
    path = directory / "adw_state.json"
    os.replace(tmp, path)
    return path


def watch(*args: str) -> subprocess.Popen[str]:
    """Run ``adw-broadcaster watch *args`` as a child process (UTC clock, lines on stdout)."""
    return subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "watch", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()  # and close its pipes


async def read_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    text = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    assert text, f"watch ended: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}"
    return text.rstrip("\n")


SLEEPER = "import time; time.sleep(120)"


class Children:
    """Child processes started by a test, killed at its end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *argv: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER, *argv], cwd=cwd)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
