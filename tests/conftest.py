"""Fixtures: a real workspace on disk, writers for it, configs, and WebSocket helpers."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, async_playwright

from broadcaster import Config, create_app, load_config
from tests.helpers import Children
from tests.protocol_check import answers_checked, check_frame
from tests.servers import PostgresServer, Receiver, RedisServer

RECEIVE_TIMEOUT = 5.0
# What a browser sends to open a WebSocket: for requests that must be refused before the upgrade.
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


class IsoTime:
    """Equal to any string formatted like the protocol's timestamps."""

    _pattern = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self._pattern.fullmatch(other))

    def __repr__(self) -> str:
        return "<ISO time>"


ISO_TIME = IsoTime()


class Epoch:
    """Equal to any event-log epoch (16 hex digits)."""

    _pattern = re.compile(r"[0-9a-f]{16}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self._pattern.fullmatch(other))

    def __repr__(self) -> str:
        return "<epoch>"


EPOCH = Epoch()


@dataclass
class Workspace:
    root: Path
    agents: Path
    trees: Path


# Debian's Chromium (tests/system-packages.sh installs it; Playwright cannot download one here) and
# the flags it needs on a machine without a display or a network; clients/js's tests read the same file.
_CHROMIUM = json.loads((Path(__file__).parent / "chromium.json").read_text())
CHROMIUM: str = _CHROMIUM["executable"]
CHROMIUM_FLAGS: list[str] = _CHROMIUM["flags"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, driven by Playwright."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


@pytest.fixture(autouse=True)
def messages_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every WebSocket message a test's aiohttp client receives against /asyncapi.json's schemas."""
    original = aiohttp.ClientWebSocketResponse.receive

    async def receive(self: aiohttp.ClientWebSocketResponse, timeout: float | None = None) -> Any:
        msg = await original(self, timeout)
        if msg.type is WSMsgType.TEXT:
            check_frame(msg.data)
        return msg

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "receive", receive)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path, tmp_path / "agents", tmp_path / "trees")
    ws.agents.mkdir()
    ws.trees.mkdir()
    return ws


@pytest.fixture
def write_state(workspace: Workspace) -> Callable[..., Path]:
    """Return ``write(adw_id, *, atomic=False, raw=None, **fields)``: write a state file as agents do."""
    counter = 0

    def write(adw_id: str, *, atomic: bool = False, raw: bytes | None = None, **fields: Any) -> Path:
        nonlocal counter
        directory = workspace.agents / adw_id
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "adw_state.json"
        body = raw if raw is not None else orjson.dumps({"adw_id": adw_id, **fields}, option=orjson.OPT_INDENT_2)
        if atomic:
            counter += 1
            tmp = directory / f".adw_state.json.{counter}.tmp"
            tmp.write_bytes(body)
            os.replace(tmp, path)
        else:
            with path.open("r+b" if path.exists() else "wb") as fh:  # in place, like json.dump on an open file
                fh.truncate(0)
                fh.write(body)
        return path

    return write


@pytest.fixture
def make_config(workspace: Workspace) -> Callable[..., Config]:
    """Return ``make(**overrides)``: a Config on the workspace; keys are ``section__key``."""

    def make(**overrides: Any) -> Config:
        values: dict[str, Any] = {
            "adw.agents_dir": str(workspace.agents),
            "adw.trees_dir": str(workspace.trees),
            "broadcast.min_interval": 0.2,
            "server.heartbeat_interval": 30.0,
            "webhook.status_url": "",  # tests that want the poller start their own webhook service
            "event_log.path": str(workspace.root / ".state" / "events.db"),
            # Off unless a test is about liveness: the scan sees every process on the machine, and
            # these tests use short fixed ids ("a1") that another program's command line may hold.
            "adw.process_scan": False,
        }
        values.update({key.replace("__", "."): value for key, value in overrides.items()})
        return load_config(None, env={}, overrides=values, cwd=workspace.root)

    return make


@pytest.fixture
def start(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config]) -> Callable[..., Any]:
    """Return ``await start(**config_overrides)``: a TestClient of a running app."""

    async def go(config: Config | None = None, **overrides: Any) -> TestClient[web.Request, web.Application]:
        app = create_app(config or make_config(**overrides))
        app.middlewares.insert(0, answers_checked)  # every answer is checked against /openapi.json
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return go


async def receive(ws: Any, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
    """Return the next JSON message, failing the test if none comes within ``timeout``."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type is WSMsgType.TEXT, f"expected a text frame, got {msg.type!r} {msg.data!r} {msg.extra!r}"
    result: dict[str, Any] = orjson.loads(msg.data)
    return result


async def receive_until(
    ws: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float = RECEIVE_TIMEOUT
) -> list[dict[str, Any]]:
    """Collect messages until one satisfies ``predicate``; return all of them, that one last."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            seen.append(await receive(ws, timeout))
            if predicate(seen[-1]):
                return seen


def settled(message: dict[str, Any]) -> bool:
    """Return whether a system-status message has no entry still checking (its first check answered)."""
    return all(entry.get("status") != "unknown" for entry in message["data"]["services"].values())


async def receive_settled(ws: Any, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
    """Return the first system-status message on ``ws`` in which every entry's first check has answered."""
    return (await receive_until(ws, settled, timeout))[-1]


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = await RedisServer(directory).start()
    yield server
    server.stop()


@pytest.fixture
async def pg() -> AsyncIterator[PostgresServer]:
    """A PostgreSQL cluster of its own (Debian's server, initdb in a temp dir), gone after the test."""
    server = await PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def children() -> Iterator[Children]:
    """Child processes standing in for agents (a sleeping Python with the given argv), killed at the end."""
    made = Children()
    yield made
    made.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """An HTTP server recording what Apprise's json:// plugin posts to it (``receiver.url``)."""
    r = await Receiver().start()
    yield r
    await r.stop()
