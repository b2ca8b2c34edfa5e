"""``/client.js`` in a real headless Chromium (Debian's), against a real service process.

Connect and receive on one socket; patches applied; an idle link stays "good"; the socket lost
while HTTP works (Playwright closes it) -> "poor" and the HTTP fallback polled (seen in the
service's log); the service stopped and started again -> the page resumes without a reload,
at once when the browser says it is back online.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
from playwright.async_api import Page, WebSocket, WebSocketRoute

from broadcaster.channels.specs import SPECS
from broadcaster.core.patches import Patcher
from tests.helpers import Service, eventually, free_port, in_page, service_config
from tests.protocol_check import check_frame

# The module a page would hold. It runs in a page the service itself served (a page Playwright
# made up has no network address, and Chromium then refuses its sockets to loopback).
SCRIPT = """import { connect } from "/client.js";
window.messages = [];
window.statuses = [];
window.jitter = null;
const live = connect(undefined, { fallbackInterval: 300, heartbeatTimeout: 2500,
                                  random: () => window.jitter ?? Math.random() });
live.onStatus((s) => window.statuses.push(s));
live.subscribe("adw-state:a1", (m) => window.messages.push(m));
live.subscribe("adw-monitor", (m) => window.messages.push(m));
window.live = live;
"""


async def messages(page: Page, channel: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate(f"window.messages.filter((m) => m.channel === {channel!r})")
    return found


async def test_the_browser_client_lives_through_a_lost_socket_and_a_restart(browser, workspace, write_state) -> None:
    write_state("a1", issue_number=1, status="running", current_phase="plan", step=0)
    write_state("a2", issue_number=2, status="running", current_phase="plan", step=0)
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    base = f"http://127.0.0.1:{port}"
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sockets: list[WebSocket] = []
    heartbeats: list[str] = []

    invalid: list[str] = []

    def on_frame(payload: str | bytes) -> None:
        text = payload if isinstance(payload, str) else payload.decode()
        if '"heartbeat"' in text:
            heartbeats.append(text)
        try:
            check_frame(text)  # every frame the browser gets matches /asyncapi.json
        except AssertionError as exc:
            invalid.append(str(exc))

    def on_socket(ws: WebSocket) -> None:
        sockets.append(ws)
        ws.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    blocked = muted = False  # the socket refused / open but nothing from the service gets through
    routes: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        routes.append(ws)
        if blocked:
            asyncio.ensure_future(ws.close(code=1011, reason="blocked by the test"))
            return
        server = ws.connect_to_server()
        server.on_message(lambda message: None if muted else ws.send(message))

    await page.route_web_socket(f"ws://127.0.0.1:{port}/ws", route)
    try:
        await page.goto(f"{base}/api/v1/channels")
        await page.add_script_tag(content=SCRIPT, type="module")
        # Connect and receive: both channels whole, on one socket, quality good.
        await in_page(page, "window.live && window.messages.length >= 2 && window.live.status.quality === 'good'")
        assert [(m["channel"], m["seq"]) for m in await page.evaluate("window.messages")] == [
            ("adw-state:a1", 1),
            ("adw-monitor", 1),
        ]
        write_state("a1", issue_number=1, status="running", current_phase="build", step=1)
        await in_page(page, "window.messages.filter((m) => m.channel === 'adw-monitor').length >= 2")
        monitor = (await messages(page, "adw-monitor"))[-1]
        assert "patch" not in monitor and monitor["seq"] == 2  # rebuilt from a patch: whole data
        assert monitor["data"]["workflows"][0]["current_phase"] == "build"
        async with aiohttp.ClientSession() as http:
            answer = await (await http.get(f"{base}/api/v1/adw-monitor")).json()
        assert {**monitor["data"], "last_updated": 0} == {**answer, "last_updated": 0}
        assert len(sockets) == 1

        # Idle with heartbeats: quality stays good.
        await eventually(lambda: len(heartbeats) >= 4, timeout=10)
        assert [s["quality"] for s in await page.evaluate("window.statuses")][-1] == "good"
        assert await page.evaluate("window.statuses.filter((s) => s.state === 'open' && s.quality === 'poor')") == []

        # Open, but heartbeats stop coming (a stalled link): poor, until they come again.
        muted = True
        await in_page(page, "window.live.status.quality === 'poor'")
        assert await page.evaluate("window.live.status.state") == "open"
        muted = False
        await in_page(page, "window.live.status.quality === 'good'")

        # The socket lost while HTTP still works: poor, and the fallback polls the channels.
        blocked = True
        await routes[-1].close(code=1011, reason="lost")
        await in_page(page, "window.live.status.quality === 'poor' && window.live.status.state === 'reconnecting'")
        write_state("a1", issue_number=1, status="running", current_phase="build", step=2)
        polled = await in_page(
            page, "window.messages.find((m) => m.fallback && m.channel === 'adw-state:a1' && m.data.step === 2)"
        )
        assert polled == {
            "type": "adw_state_update",
            "channel": "adw-state:a1",
            "data": {"adw_id": "a1", "issue_number": 1, "status": "running", "current_phase": "build", "step": 2},
            "fallback": True,
        }
        await eventually(lambda: 'GET /api/v1/adw-state/a1 HTTP/1.1" 200' in service.log, timeout=5)
        await eventually(lambda: 'GET /api/v1/adw-state/a1 HTTP/1.1" 304' in service.log, timeout=5)
        blocked = False
        resumed = await in_page(
            page, "window.messages.find((m) => m.channel === 'adw-state:a1' && m.recovered === true)", timeout=40
        )
        assert (resumed["seq"], resumed["data"]["step"]) == (3, 2)
        assert await page.evaluate("window.live.status.state") == "open"

        # The service stops: reconnecting. Back online at once when the browser says so.
        # The longest backoff, from 5 s: 5 s, 10 s, ... so a reconnect within 3 s is the wake-up's.
        await page.evaluate("window.jitter = 1; window.live.options.firstRetry = 5000")
        assert await service.stop() == 0
        await in_page(page, "window.live.status.reconnectAttempts >= 2", timeout=15)  # the next try waits 10 s
        write_state("a1", issue_number=1, status="failed", current_phase="build", step=3)
        service = await Service(workspace.root, service_config(workspace, port)).start()
        await page.evaluate("window.dispatchEvent(new Event('online'))")
        back = await in_page(
            page, "window.messages.find((m) => m.channel === 'adw-state:a1' && m.seq === 4)", timeout=3
        )
        assert (back["recovered"], back["data"]["step"]) == (True, 3)
        assert await page.evaluate("window.live.status") == {
            "state": "open",
            "quality": "good",
            "reconnectAttempts": 0,
            "lastMessageAt": await page.evaluate("window.live.status.lastMessageAt"),
        }
        # Once more, woken by the tab becoming visible instead.
        assert await service.stop() == 0
        await in_page(page, "window.live.status.reconnectAttempts >= 2", timeout=15)
        write_state("a1", issue_number=1, status="failed", current_phase="build", step=4)
        service = await Service(workspace.root, service_config(workspace, port)).start()
        await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the page is visible
        back = await in_page(
            page, "window.messages.find((m) => m.channel === 'adw-state:a1' && m.seq === 5)", timeout=3
        )
        assert (back["recovered"], back["data"]["step"]) == (True, 4)
        seqs = [m["seq"] for m in await messages(page, "adw-state:a1") if not m.get("fallback")]
        assert seqs == [1, 2, 3, 4, 5]  # nothing it had came again
        assert (errors, invalid) == ([], [])
    finally:
        await page.close()
        await service.stop()


async def test_client_js_and_its_types_are_served_with_an_etag(start) -> None:
    client = await start()
    for path, kind, marker in [
        ("/client.js", "text/javascript", "export function connect("),
        ("/client.d.ts", "application/typescript", "export function connect("),
    ]:
        response = await client.get(path)
        assert (response.status, response.content_type, response.charset) == (200, kind, "utf-8")
        assert marker in await response.text()
        again = await client.get(path, headers={"If-None-Match": response.headers["ETag"]})
        assert (again.status, again.headers["ETag"]) == (304, response.headers["ETag"])


def random_monitor(rng: random.Random) -> dict[str, Any]:
    def value(depth: int = 0) -> Any:
        kind = rng.randrange(6 if depth < 2 else 4)
        return (
            [None, rng.randint(0, 3), rng.choice(["a", "b"]), [None, 1]][kind]
            if kind < 4
            else {k: value(depth + 1) for k in rng.sample("xyz", rng.randint(0, 2))}
        )

    ids = rng.sample([f"a{i}" for i in range(6)], rng.randint(0, 5))
    workflows = [{"adw_id": i, "status": rng.choice(["running", "failed"]), "end": value(), "pr": value()} for i in ids]
    return {"workflows": workflows, "summary": {"total": len(ids)}, "last_updated": rng.choice(["t1", "t2"])}


async def test_client_js_rebuilds_what_the_server_patches_exactly(browser, start) -> None:
    """The page applies the server's patches (made by patches.Patcher) and gets each new state exactly."""
    client = await start()
    page = await browser.new_page()
    rng = random.Random(10)
    keyed = SPECS["adw-monitor"].keyed
    assert keyed is not None
    cases: list[dict[str, Any]] = []
    for _ in range(40):
        states = [random_monitor(rng) for _ in range(5)]
        patcher = Patcher(keyed)
        patcher.start(states[0], 1)
        patches = [patcher.patch(state, seq) for seq, state in enumerate(states[1:], start=2)]
        assert None not in patches  # every change of items is patchable: nulls travel as paths
        cases.append({"first": states[0], "patches": patches, "states": states})
    try:
        await page.goto(f"http://{client.host}:{client.port}/api/v1/channels")
        rebuilt = await page.evaluate(
            """async (cases) => {
                const { keyedForm, listForm, applyMergePatch } = await import("/client.js");
                const keyed = { field: "workflows", key: "adw_id" };
                return cases.map(({ first, patches }) => {
                    let held = keyedForm(first, keyed);
                    return patches.map((patch) => listForm((held = applyMergePatch(held, patch)), keyed));
                });
            }""",
            cases,
        )
        assert rebuilt == [case["states"][1:] for case in cases]
    finally:
        await page.close()
