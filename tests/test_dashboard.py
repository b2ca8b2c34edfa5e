"""The dashboard at ``/`` in Debian's Chromium, against real service processes.

The demo shows its ADWs on one socket with no console errors (and the README's screenshot is
taken here: ``UPDATE_SCREENSHOT=1`` writes it to ``docs/dashboard.png``); a state-file change
reaches its row within a second; a run whose phase changed three times replays in the detail
view's timeline, also after a restart; stopping the service reads Reconnecting and starting it
again Live, without a reload; rows open with the keyboard.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
from playwright.async_api import Browser, ConsoleMessage, Page, WebSocket

from tests.helpers import REPO, Service, eventually, free_port, in_page, service_config
from tests.protocol_check import check_frame

SCREENSHOT = REPO / "docs" / "dashboard.png"


class Watched:
    """A page with what it logged and which sockets it opened."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        self.sockets: list[WebSocket] = []
        self.channels: set[str] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("websocket", self._socket)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _socket(self, ws: WebSocket) -> None:
        self.sockets.append(ws)

        def frame(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            check_frame(text)
            found = re.search(r'"channel":"([^"]+)"', text)
            if found:
                self.channels.add(found.group(1))

        ws.on("framereceived", frame)


async def row_ids(page: Page) -> list[str]:
    ids: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#monitor-rows tr')].map((r) => r.dataset.adwId)"
    )
    return ids


async def test_the_demo_shows_every_channel_on_one_socket_with_no_console_errors(browser: Browser, tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "--config", str(REPO / "config.toml"), "--port", "0"]
        + ["--demo", "--demo-speed", "4"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        second = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 5)
        base = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first).group(1)  # type: ignore[union-attr]
        assert second.split() == ["dashboard", f"{base}/", "<-", "open", "this"]  # the first URL printed
        page = Watched(await browser.new_page(viewport={"width": 1200, "height": 640}))
        await page.page.goto(f"{base}/")
        async with aiohttp.ClientSession() as http:
            expected = {w["adw_id"] for w in (await (await http.get(f"{base}/api/v1/adw-monitor")).json())["workflows"]}
        assert expected  # the demo starts with agents
        await in_page(
            page.page, "(ids) => ids.every((id) => document.querySelector(`tr[data-adw-id='${id}']`))", sorted(expected)
        )
        await in_page(page.page, "document.getElementById('connection-state').textContent === 'Live'")
        families = {"adw-monitor", "queue", "workflow-history", "system-status", "webhook-status"}
        await eventually(lambda: families <= page.channels, timeout=10)
        assert len(page.sockets) == 1
        await in_page(page.page, "document.querySelectorAll('#service-cards li').length >= 5")
        await in_page(page.page, "document.querySelectorAll('#monitor-rows tr').length >= 3", timeout=30)
        shot = tmp_path / "dashboard.png"
        await page.page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.write_bytes(shot.read_bytes())
        assert page.problems == []
        await page.page.close()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(proc.communicate, timeout=20)


def write_phase(write_state, phase: str, **extra: Any) -> None:
    write_state("a1", issue_number=7, status="running", current_phase=phase, nl_input="Add a thing", **extra)


async def test_a_change_reaches_its_row_and_a_run_replays_across_a_restart(
    browser: Browser, workspace, write_state
) -> None:
    write_phase(write_state, "plan")
    write_state("a2", issue_number=8, status="completed", current_phase="ship", github_url="javascript:alert(1)")
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    page = Watched(await browser.new_page())
    try:
        await page.page.goto(f"http://127.0.0.1:{port}/")
        await in_page(page.page, "document.querySelectorAll('#monitor-rows tr').length === 2")
        assert await row_ids(page.page) == ["a1", "a2"]  # running first
        assert await page.page.get_attribute("tr[data-adw-id='a2'] a", "href") is None  # not a javascript: link
        phase = "tr[data-adw-id='a1'] .phase-name"
        assert await page.page.text_content(phase) == "plan"

        # A state-file change is drawn in its row within a second, and only its row flashes.
        for step, name in enumerate(["build", "test", "review"], start=1):
            written = time.monotonic()
            write_phase(write_state, name, current_cost=step * 0.5)
            await in_page(
                page.page, "([sel, name]) => document.querySelector(sel)?.textContent === name", [phase, name], 1.0
            )
            assert time.monotonic() - written < 1.0
        assert await page.page.get_attribute("tr[data-adw-id='a2']", "class") in (None, "")
        assert await page.page.text_content("#count-running") == "1"

        # The keyboard opens the detail view: the timeline of a run whose phase changed three times.
        await page.page.focus("tr[data-adw-id='a1']")
        await page.page.keyboard.press("Enter")
        await in_page(page.page, "document.querySelectorAll('#timeline-rows li').length === 4")
        assert page.page.url.endswith("#/adw/a1")
        steps = await timeline(page.page)
        assert steps == [
            "first state recorded",
            "phase plan → build; cost – → $0.50",
            "phase build → test; cost $0.50 → $1.00",
            "phase test → review; cost $1.00 → $1.50",
        ]
        # Scrub back with the keyboard: the state shown is the one of that moment.
        await page.page.focus("#timeline-scrub")
        await page.page.keyboard.press("ArrowLeft")
        await page.page.keyboard.press("ArrowLeft")
        assert await shown_phase(page.page) == "build"

        # Stopped: Reconnecting. Started again: Live, without a reload.
        assert await service.stop() == 0
        await in_page(page.page, "document.getElementById('connection-state').textContent === 'Reconnecting'")
        service = await Service(workspace.root, service_config(workspace, port)).start()
        await in_page(page.page, "document.getElementById('connection-state').textContent === 'Live'", timeout=40)
        assert (
            len(page.sockets) >= 2
            and await page.page.evaluate("performance.getEntriesByType('navigation').length") == 1
        )

        # The browser offline: Offline; back online: Live again.
        await page.page.context.set_offline(True)
        await in_page(page.page, "document.getElementById('connection-state').textContent === 'Offline'")
        await page.page.context.set_offline(False)
        await in_page(page.page, "document.getElementById('connection-state').textContent === 'Live'", timeout=20)

        # After the restart the run still replays from the event log.
        await page.page.reload()
        await in_page(page.page, "document.querySelectorAll('#timeline-rows li').length === 4")
        assert await timeline(page.page) == steps
        problems = [p for p in page.problems if "ERR_CONNECTION_REFUSED" not in p and "WebSocket connection" not in p]
        assert problems == []  # (while the service was down, the browser logged its refused connections)
    finally:
        await page.page.close()
        await service.stop()


async def timeline(page: Page) -> list[str]:
    steps: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#timeline-rows li button')].map((b) => b.textContent)"
    )
    return steps


async def shown_phase(page: Page) -> str | None:
    value: str | None = await page.evaluate(
        "[...document.querySelectorAll('#detail-state dt')].find((dt) => dt.textContent === 'current_phase')"
        "?.nextElementSibling.textContent"
    )
    return value


async def test_with_a_token_the_dashboard_opens_once_with_it_and_then_runs_on_its_cookie(
    browser: Browser, workspace, write_state
) -> None:
    write_phase(write_state, "plan")
    port = free_port()
    text = service_config(workspace, port).replace("[server]\n", "[server]\ntoken = 'dash-s3cret'\n")
    service = await Service(workspace.root, text).start()
    page = Watched(await browser.new_page())
    try:
        await page.page.goto(f"http://127.0.0.1:{port}/?token=dash-s3cret")
        await in_page(page.page, "document.getElementById('connection-state').textContent === 'Live'")
        await in_page(page.page, "document.querySelector(\"tr[data-adw-id='a1']\") !== null")
        write_phase(write_state, "build")
        await in_page(page.page, "document.querySelector(\"tr[data-adw-id='a1'] .phase-name\").textContent === 'build'")
        assert page.problems == []
        other = await browser.new_page()  # another browser profile without the cookie: refused
        response = await other.goto(f"http://127.0.0.1:{port}/")
        assert response is not None and response.status == 401
        await other.close()
    finally:
        await page.page.close()
        await service.stop()
