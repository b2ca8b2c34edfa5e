"""The monitor tells the truth about agents (issue 23): real processes, real files, the real service.

A process is an ADW's when its command line holds the id or its working directory is inside
``trees/{id}`` or ``agents/{id}``; an ADW whose state says running is running while it has a
process or recent file activity, and stalled (``paused``, ``stalled: true``) once it has neither
for ``stall_after``; time passing makes that change on its own; scanning off keeps the state
file's word; the phase agrees on every channel; the dashboard shows a stalled row.

The scan sees every process of the machine, so every test here uses random ADW ids.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from playwright.async_api import Browser

from broadcaster.channels.adw_data import status_of
from broadcaster.web.keys import ADW_FILES
from sources.adw_files import AdwFiles
from sources.adw_liveness import Liveness
from sources.adw_read import AdwRecord
from sources.processes import ProcessTable
from tests.conftest import ISO_TIME, Workspace, receive, receive_settled, receive_until
from tests.helpers import Service, eventually, in_page, save_state, service_config


def new_id() -> str:
    return secrets.token_hex(4)


def test_one_look_finds_processes_by_command_line_and_by_working_directory(tmp_path: Path, children) -> None:
    agents, trees = tmp_path / "agents", tmp_path / "trees"
    by_arg, by_flag, by_tree, by_agents, idle = (new_id() for _ in range(5))
    (trees / by_tree / "src").mkdir(parents=True)
    (agents / by_agents / "adw_plan_iso").mkdir(parents=True)
    first = children.start(by_arg)
    second = children.start(f"--adw-id={by_flag}", f"{by_flag}.log")
    third = children.start(cwd=trees / by_tree / "src")
    fourth = children.start(cwd=agents / by_agents / "adw_plan_iso")
    scan = ProcessTable(agents, trees).scan([by_arg, by_flag, by_tree, by_agents, idle])
    assert scan.error is None and scan.processes >= 4 and scan.seconds > 0
    assert scan.pids == {
        by_arg: (first.pid,),
        by_flag: (second.pid,),
        by_tree: (third.pid,),
        by_agents: (fourth.pid,),
    }
    children.kill(first)
    assert by_arg not in ProcessTable(agents, trees).scan([by_arg]).pids


def test_the_service_own_process_never_counts(tmp_path: Path, children, monkeypatch: pytest.MonkeyPatch) -> None:
    adw_id = new_id()
    inside = tmp_path / "agents" / adw_id
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)  # this process now works inside agents/{id}, as would a child of an agent
    table = ProcessTable(tmp_path / "agents", tmp_path / "trees")
    assert table.scan([adw_id]).pids == {}
    child = children.start(cwd=inside)
    assert table.scan([adw_id]).pids == {adw_id: (child.pid,)}
    assert psutil.Process().cwd() == str(inside.resolve())


@pytest.mark.parametrize(
    ("said", "pids", "quiet", "scanning", "expected"),
    [
        ("completed", (), True, True, ("completed", False)),
        ("failed", (7,), False, True, ("failed", False)),
        ("running", (7,), True, True, ("running", False)),
        ("pending", (7,), True, True, ("running", False)),  # a live process is running, whatever was said
        ("running", (), False, True, ("running", False)),  # recent activity
        (None, (), False, True, ("running", False)),
        ("running", (), True, True, ("paused", True)),  # no process, no activity: stalled
        (None, (), True, True, ("queued", False)),  # says nothing and shows nothing: the old rules
        ("pending", (), False, True, ("queued", False)),
        ("paused", (), False, True, ("paused", False)),
        ("running", (), True, False, ("running", False)),  # scanning off: the state's word
        ("pending", (7,), False, False, ("queued", False)),
    ],
)
def test_status_comes_from_evidence_first_rule_that_applies(
    said: str | None, pids: tuple[int, ...], quiet: bool, scanning: bool, expected: tuple[str, bool]
) -> None:
    state = {"adw_id": "x"} if said is None else {"adw_id": "x", "status": said}
    record = AdwRecord("x", state, pids=pids, quiet=quiet, activity=1)
    assert status_of(record, scanning=scanning, queue_status=None, in_worktree=False) == expected


async def test_a_killed_agent_goes_stalled_on_time_and_back_when_its_files_move(tmp_path: Path, children) -> None:
    agents, trees = tmp_path / "agents", tmp_path / "trees"
    adw_id = new_id()
    state = save_state(agents, adw_id, status="running")
    (agents / adw_id / "adw_build_iso").mkdir()
    now = [time.time()]
    liveness = Liveness(agents, trees, scan=True, interval=0.05, stall_after=600, clock=lambda: now[0])
    source = AdwFiles(agents, trees, liveness=liveness)
    agent = children.start(adw_id)
    changes = source.changes()

    async def until(check: Any) -> AdwRecord:
        while True:
            await asyncio.wait_for(anext(changes), 10)
            if check(source.records[adw_id]):
                return source.records[adw_id]

    try:
        first = await until(lambda r: r.pids)
        assert (first.pids, first.quiet, first.activity) == ((agent.pid,), False, int(state.stat().st_mtime))
        children.kill(agent)
        record = await until(lambda r: not r.pids)
        assert record.quiet is False  # its files moved moments ago
        now[0] += 600  # time passes, no file changes: the next look judges it quiet
        assert (await until(lambda r: r.quiet)).pids == ()
        log = agents / adw_id / "adw_build_iso" / "execution.log"
        log.write_text("working again\n")
        os.utime(log, (now[0], now[0]))  # its activity is "now" on the test's clock
        back = await until(lambda r: not r.quiet)
        assert back.activity == int(now[0])
    finally:
        await changes.aclose()


async def test_the_service_shows_a_killed_agent_stalled_and_back_over_a_websocket(tmp_path: Path, children) -> None:
    """The path production takes: an ``adw-broadcaster`` process, its socket, real agents."""
    workspace = Workspace(tmp_path, tmp_path / "agents", tmp_path / "trees")
    workspace.agents.mkdir()
    workspace.trees.mkdir()
    adw_id, done = new_id(), new_id()
    save_state(workspace.agents, adw_id, status="running", current_phase="build")
    save_state(workspace.agents, done, status="completed")
    config = service_config(workspace, 0).replace("[adw]\n", "[adw]\nprocess_scan_interval = 0.1\nstall_after = 5\n")
    service = Service(tmp_path, config)
    await service.start()

    def item(message: dict[str, Any], which: str = adw_id) -> dict[str, Any]:
        if message["type"] == "heartbeat":
            return {}
        return next(w for w in message["data"]["workflows"] if w["adw_id"] == which)

    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws/adw-monitor")) as ws:
            first = await receive(ws)
            assert (item(first, done)["status"], item(first, done)["is_process_active"]) == ("completed", False)
            agent = children.start(adw_id)
            seen = await receive_until(ws, lambda m: item(m).get("is_process_active") is True, timeout=10)
            running = item(seen[-1])
            assert {k: running[k] for k in ("status", "pids", "stalled", "stalled_seconds", "current_phase")} == {
                "status": "running",
                "pids": [agent.pid],
                "stalled": False,
                "stalled_seconds": None,
                "current_phase": "build",
            }
            assert running["last_activity"] == ISO_TIME
            children.kill(agent)
            gone = await receive_until(ws, lambda m: item(m).get("is_process_active") is False, timeout=10)
            assert (item(gone[-1])["status"], item(gone[-1])["stalled"]) == ("running", False)  # files moved lately
            stalled = await receive_until(ws, lambda m: item(m).get("stalled") is True, timeout=15)
            last = stalled[-1]
            assert (item(last)["status"], item(last)["pids"], item(last)["stalled_seconds"] >= 3) == (
                "paused",
                [],
                True,
            )
            assert (last["data"]["summary"]["stalled"], last["data"]["summary"]["paused"]) == (1, 1)
            assert item(last, done)["status"] == "completed"  # no process, and still completed
            (workspace.trees / adw_id).mkdir()
            agent = children.start(cwd=workspace.trees / adw_id)
            back = await receive_until(ws, lambda m: item(m).get("status") == "running", timeout=10)
            assert (item(back[-1])["pids"], item(back[-1])["stalled"]) == ([agent.pid], False)
            assert back[-1]["data"]["summary"]["stalled"] == 0
            children.kill(agent)
            await receive_until(ws, lambda m: item(m).get("stalled") is True, timeout=15)
            save_state(workspace.agents, adw_id, status="running", current_phase="test")  # the agent writes again
            moved = await receive_until(ws, lambda m: item(m).get("stalled") is False, timeout=10)
            assert (item(moved[-1])["status"], item(moved[-1])["current_phase"]) == ("running", "test")
        async with aiohttp.ClientSession() as session:
            async with session.get(service.url("/api/v1/system-status")) as response:
                adw_files = (await response.json())["services"]["adw_files"]
        assert adw_files["status"] == "healthy"
        assert adw_files["details"]["process_scan"].startswith("every 0.1s; the last look took under ")
    finally:
        await service.stop()


async def test_a_quiet_running_agent_sends_nothing_however_many_looks(start, write_state, children) -> None:
    adw_id = new_id()
    write_state(adw_id, status="running")
    children.start(adw_id)
    client = await start(adw__process_scan=True, adw__process_scan_interval=0.02)
    liveness = client.app[ADW_FILES].liveness
    async with client.ws_connect("/ws/adw-monitor") as ws:
        first = await receive_until(ws, lambda m: m["data"]["workflows"][0]["is_process_active"])
        looks = liveness.health.looks
        await eventually(lambda: liveness.health.looks >= looks + 10)
        await ws.send_str("ping")
        # Frames come in order: anything the ten looks had sent would come before the pong.
        assert (await ws.receive(timeout=5)).data == "pong"
        assert first[-1]["data"]["workflows"][0]["status"] == "running"


async def test_scanning_off_and_an_unreadable_process_table_leave_the_state_file_in_charge(
    start, write_state, children, monkeypatch: pytest.MonkeyPatch
) -> None:
    adw_id, pending = new_id(), new_id()
    write_state(adw_id, status="running")
    write_state(pending, status="pending")
    children.start(pending)  # a live process, which nobody looks for
    client = await start()  # the test configuration: process_scan = false
    async with client.ws_connect("/ws/adw-monitor") as ws:
        items = {w["adw_id"]: w for w in (await receive(ws))["data"]["workflows"]}
    assert [(items[i]["status"], items[i]["is_process_active"], items[i]["pids"]) for i in (adw_id, pending)] == [
        ("running", True, []),
        ("queued", False, []),
    ]
    async with client.ws_connect("/ws/system-status") as ws:
        entry = (await receive_settled(ws))["data"]["services"]["adw_files"]
    assert entry["message"].endswith("; process scan off: status follows the state files")
    assert entry["details"]["process_scan"] == "off"

    monkeypatch.setattr(psutil, "PROCFS_PATH", str(Path(client.app[ADW_FILES].agents_dir) / "no-proc"))
    broken = await start(
        adw__process_scan=True, adw__process_scan_interval=0.05, adw__stall_after=0.001, event_log__path=""
    )
    async with broken.ws_connect("/ws/system-status") as ws:
        entry = (await receive_settled(ws))["data"]["services"]["adw_files"]
    assert entry["status"] == "degraded"
    assert entry["message"].startswith("process scan: cannot read the process table: ")
    assert entry["message"].endswith("; status follows the state files")
    async with broken.ws_connect("/ws/adw-monitor") as ws:
        items = {w["adw_id"]: w for w in (await receive(ws))["data"]["workflows"]}
    assert (items[adw_id]["status"], items[adw_id]["stalled"], items[pending]["status"]) == ("running", False, "queued")


async def test_the_phase_is_one_answer_on_every_channel(start, write_state, workspace) -> None:
    named, bogus, none = new_id(), new_id(), new_id()
    write_state(named, issue_number=1, current_phase="ship")
    (workspace.agents / named / "adw_plan_iso").mkdir()
    write_state(bogus, issue_number=2, current_phase="deploying")
    for phase in ("plan", "build"):
        (workspace.agents / bogus / f"adw_{phase}_iso").mkdir()
    write_state(none, issue_number=3)
    client = await start()

    async def get(path: str) -> Any:
        async with client.get(path) as response:
            return await response.json()

    workflows = {w["adw_id"]: w["phase"] for w in await get("/api/v1/workflows")}
    monitor = {w["adw_id"]: w["current_phase"] for w in (await get("/api/v1/adw-monitor"))["workflows"]}
    states = {i: (await get(f"/api/v1/adw-state/{i}")).get("current_phase") for i in (named, bogus, none)}
    assert (workflows, monitor, states) == (
        {named: "ship", bogus: "build", none: "plan"},
        {named: "ship", bogus: "build", none: "plan"},
        {named: "ship", bogus: "build", none: None},  # a state without a phase is not given one
    )


@pytest.fixture
async def stalled_service(tmp_path: Path) -> AsyncIterator[tuple[Service, str]]:
    workspace = Workspace(tmp_path, tmp_path / "agents", tmp_path / "trees")
    workspace.trees.mkdir(parents=True)
    adw_id, fine = new_id(), new_id()
    long_ago = time.time() - 3600
    for which, status in ((adw_id, "running"), (fine, "completed")):
        path = save_state(workspace.agents, which, status=status, issue_number=5, nl_input=f"ADW {which}")
        os.utime(path, (long_ago, long_ago))
    config = service_config(workspace, 0).replace("[adw]\n", "[adw]\nprocess_scan_interval = 0.2\n")
    service = Service(tmp_path, config)
    await service.start()
    try:
        yield service, adw_id
    finally:
        await service.stop()


async def test_the_dashboard_shows_a_stalled_agent_apart_and_counts_it(browser: Browser, stalled_service) -> None:
    service, adw_id = stalled_service
    page = await browser.new_page()
    try:
        await page.goto(service.url("/"))
        row = f"#monitor-rows tr[data-adw-id='{adw_id}']"
        await in_page(page, f"document.querySelector(\"{row}\")?.classList.contains('stalled')")
        badge = await page.text_content(f"{row} .badge")
        assert badge is not None and badge.startswith("stalled 1h 0")  # an hour without activity
        assert await page.get_attribute(f"{row} .badge", "class") == "badge s-stalled"
        assert await page.text_content("#count-stalled") == "1"
        assert await page.text_content("#count-paused") == "1"
        assert await page.eval_on_selector_all("#monitor-rows tr.stalled", "rows => rows.length") == 1
    finally:
        await page.close()
