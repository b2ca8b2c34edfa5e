"""The clients against real service processes: ids that name object members, and four bugs a review found.

- ``/client.js`` in Debian's Chromium keeps ids such as ``__proto__`` and ``constructor`` as data,
  through whole messages and patches, and so does the dashboard;
- a fallback poll answered after the socket reopened changes nothing (the patch base stays the
  socket's), and the fallback keeps the base path the socket URL has;
- the dashboard's timeline tells events of a new epoch from old ones;
- the Python client asks for patches again when it re-subscribes after a gap.

Each test fails on the commit before issue 21.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from playwright.async_api import Page

from broadcaster.channels.specs import SPECS
from broadcaster.core.patches import Patcher
from broadcaster.subscriber.stream import subscribe
from tests.between import Between
from tests.helpers import Service, eventually, free_port, service_config

IDS = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"]


async def served(service: Service, path: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(service.url(f"/api/v1/{path}")) as response:
            return await response.json()


async def last_data(page: Page, channel: str) -> Any:
    """The data of the last message the page's listener got on ``channel`` (as JSON text: ids kept as data)."""
    text = await page.evaluate(
        "(c) => JSON.stringify((window.messages ?? []).filter((m) => m.channel === c).at(-1)?.data ?? null)",
        channel,
    )
    return orjson.loads(text)


async def until_same(
    page: Page,
    service: Service,
    channel: str,
    path: str,
    check: Callable[[Any], bool] = lambda _: True,
    timeout: float = 10.0,
) -> Any:
    """Wait until the service's answer at ``path`` passes ``check`` and the page's last data of ``channel`` is it."""

    async def same() -> Any:
        want = await served(service, path)
        return [want] if check(want) and steady(await last_data(page, channel)) == steady(want) else None

    return (await eventually(same, timeout))[0]


def steady(data: Any) -> Any:
    """``data`` without the monitor's clock-derived fields (a message is as of when it was sent)."""
    if not isinstance(data, dict) or "last_updated" not in data:
        return data
    rows = [{k: v for k, v in w.items() if k != "duration_seconds"} for w in data.get("workflows", [])]
    return {**{k: v for k, v in data.items() if k != "last_updated"}, "workflows": rows}


def phases(data: Any) -> list[tuple[str, str]]:
    return [(w["adw_id"], w["current_phase"]) for w in data["workflows"]]


async def test_ids_that_name_object_members_are_data_in_the_client_and_the_dashboard(
    browser, workspace, write_state
) -> None:
    for n, adw_id in enumerate(IDS):
        write_state(adw_id, issue_number=str(n), status="running", current_phase="plan", nl_input=f"issue {n}")
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    patches: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda p: patches.append(p) if '"patch"' in p else None))
    try:
        await page.goto(service.url("/api/v1/channels"))
        await page.add_script_tag(
            type="module",
            content="""import { connect } from "/client.js";
            window.messages = [];
            const live = connect(undefined, { patches: true });
            for (const c of ["adw-monitor", "workflows", "adw-state:__proto__", "adw-state:constructor"]) {
              live.subscribe(c, (m) => window.messages.push(m));
            }""",
        )
        await until_same(page, service, "adw-monitor", "adw-monitor")
        await until_same(page, service, "workflows", "workflows")
        # Changes to each ADW come as patches keyed by its id; a new ADW joins, one leaves.
        for n, adw_id in enumerate(IDS):
            write_state(adw_id, issue_number=str(n), status="running", current_phase="build", nl_input=f"issue {n}")
            built = functools.partial(lambda d, a: (a, "build") in phases(d), a=adw_id)
            await until_same(page, service, "adw-monitor", "adw-monitor", built)
        write_state("a1", issue_number="9", status="running", current_phase="plan")
        (workspace.agents / "toString" / "adw_state.json").unlink()
        (workspace.agents / "toString").rmdir()
        write_state("__proto__", issue_number="0", status="failed", current_phase="test", error_count=1)
        expected = sorted({*IDS, "a1"} - {"toString"})
        async with asyncio.timeout(10):  # the service has seen all three changes
            while sorted(w["adw_id"] for w in (await served(service, "adw-monitor"))["workflows"]) != expected:
                await asyncio.sleep(0.05)
        await until_same(page, service, "adw-monitor", "adw-monitor")
        await until_same(page, service, "workflows", "workflows")
        await until_same(page, service, "adw-state:__proto__", "adw-state/__proto__")
        await until_same(page, service, "adw-state:constructor", "adw-state/constructor")
        assert len(patches) >= 5 and errors == []

        # The dashboard draws a row for each of them.
        await page.goto(service.url("/"))
        await page.wait_for_function("document.querySelectorAll('#monitor-rows tr').length === 5", polling=50)
        rows = await page.evaluate("[...document.querySelectorAll('#monitor-rows tr')].map((r) => r.dataset.adwId)")
        assert sorted(rows) == sorted({*IDS, "a1"} - {"toString"}) and errors == []
    finally:
        await page.close()
        await service.stop()


def monitor_with(ids: list[str], rng: random.Random) -> dict[str, Any]:
    chosen = rng.sample(ids, rng.randint(0, len(ids)))
    workflows = [
        {"adw_id": i, "status": rng.choice(["running", "failed"]), "end": rng.choice([None, 1, {"x": None}])}
        for i in chosen
    ]
    return {"workflows": workflows, "summary": {"total": len(chosen)}, "last_updated": rng.choice(["t1", "t2"])}


async def test_client_js_rebuilds_patches_for_any_id(browser, start) -> None:
    """keyedForm / applyMergePatch / listForm against the server's Patcher, with ids that name members."""
    client = await start()
    page = await browser.new_page()
    rng = random.Random(21)
    keyed = SPECS["adw-monitor"].keyed
    assert keyed is not None
    cases: list[dict[str, Any]] = []
    for _ in range(40):
        states = [monitor_with([*IDS, "a1", "a2"], rng) for _ in range(5)]
        patcher = Patcher(keyed)
        patcher.start(states[0], 1)
        steps = []
        for n, state in enumerate(states[1:], 2):
            patch = patcher.patch(state, n)  # None: the server sends that state whole
            steps.append({"whole": state} if patch is None else {"patch": patch})
        cases.append({"first": states[0], "steps": steps, "states": states})
    try:
        await page.goto(f"http://{client.host}:{client.port}/api/v1/channels")
        rebuilt = await page.evaluate(
            """async (text) => {  // JSON text both ways: a "__proto__" key stays a key
                const { keyedForm, listForm, applyMergePatch } = await import("/client.js");
                const keyed = { field: "workflows", key: "adw_id" };
                return JSON.stringify(JSON.parse(text).map(({ first, steps }) => {
                    let held = keyedForm(first, keyed);
                    return steps.map((step) => {
                        held = "whole" in step ? keyedForm(step.whole, keyed) : applyMergePatch(held, step.patch);
                        return listForm(held, keyed);
                    });
                }));
            }""",
            orjson.dumps(cases).decode(),
        )
        assert orjson.loads(rebuilt) == [case["states"][1:] for case in cases]
        assert sum("patch" in step for case in cases for step in case["steps"]) > 100  # mostly patches
    finally:
        await page.close()


# In the page: count fetches not yet done (a body being read counts until the code after it ran).
COUNT_FETCHES = """
window.inflight = 0;
const realFetch = window.fetch.bind(window);
window.fetch = (...args) => {
  window.inflight++;
  return realFetch(...args).then(
    (response) => {
      const json = response.json.bind(response);
      response.json = () => json().finally(() => setTimeout(() => window.inflight--, 0));
      if (response.status !== 200) setTimeout(() => window.inflight--, 0);
      return response;
    },
    (error) => { window.inflight--; throw error; },
  );
};
"""


@pytest.mark.parametrize("prefix", ["", "/behind/a/proxy"])
async def test_a_fallback_poll_answered_after_the_socket_reopened_changes_nothing(
    browser, workspace, write_state, prefix: str
) -> None:
    write_state("a1", issue_number="1", status="running", current_phase="plan")
    port = free_port()
    service = await Service(workspace.root, service_config(workspace, port)).start()
    page = await browser.new_page()
    try:
        async with Between(service.port, prefix) as between:
            await page.goto(service.url("/api/v1/channels"))
            await page.evaluate(COUNT_FETCHES)
            await page.add_script_tag(
                type="module",
                content=f"""import {{ connect }} from "/client.js";
                window.messages = [];
                const live = connect({between.url!r}, {{ fallbackInterval: 300, firstRetry: 100, maxRetry: 200 }});
                live.subscribe("adw-monitor", (m) => window.messages.push(m));""",
            )
            await until_same(page, service, "adw-monitor", "adw-monitor")

            # The socket is lost; the fallback poll's answer (today's data) is held after its headers.
            between.hold = asyncio.Event()
            between.down = True
            await between.cut()
            async with asyncio.timeout(10):
                while not between.polls:
                    await asyncio.sleep(0.02)
            assert between.polls[0] == f"{prefix}/api/v1/adw-monitor"  # the socket's base path kept

            # Meanwhile things change; the socket comes back and brings them, then a patch.
            write_state("a2", issue_number="2", status="running", current_phase="plan")
            write_state("a1", issue_number="1", status="running", current_phase="build")
            between.down = False
            await until_same(page, service, "adw-monitor", "adw-monitor", lambda d: ("a1", "build") in phases(d))
            write_state("a1", issue_number="1", status="running", current_phase="test")
            await until_same(page, service, "adw-monitor", "adw-monitor", lambda d: ("a1", "test") in phases(d))

            # The held answer arrives now, older than what the socket gave: it changes nothing.
            between.hold.set()
            await page.wait_for_function("window.inflight === 0", polling=20, timeout=10_000)
            write_state("a1", issue_number="1", status="running", current_phase="review")  # a patch on the base
            final = await until_same(
                page, service, "adw-monitor", "adw-monitor", lambda d: ("a1", "review") in phases(d)
            )
            assert sorted(phases(final)) == [("a1", "review"), ("a2", "plan")]
            kinds = await page.evaluate("window.messages.map((m) => m.fallback === true)")
            assert True not in kinds[kinds.index(False, 1) :]  # no fallback answer after the socket's first
            assert {frame.get("channel") for frame in between.received if "patch" in frame} == {"adw-monitor"}
    finally:
        await page.close()
        await service.stop()


async def test_the_timeline_tells_a_new_epochs_events_from_old_ones(browser, workspace, write_state) -> None:
    write_state("a1", issue_number="1", status="running", current_phase="plan")
    port = free_port()
    config = service_config(workspace, port)
    service = await Service(workspace.root, config).start()
    page = await browser.new_page()
    timeline = "document.querySelectorAll('#timeline-rows li').length"
    try:
        await page.goto(service.url("/#/adw/a1"))
        write_state("a1", issue_number="1", status="running", current_phase="build")
        await page.wait_for_function(f"{timeline} === 2", polling=50)
        # The event log is lost: a new epoch, whose seqs start again at 1.
        assert await service.stop() == 0
        for path in workspace.root.iterdir():
            if path.name.startswith("events.db"):
                path.unlink()
        service = await Service(workspace.root, config).start()
        # 2 old events, then the new epoch's first (the state as it was, seq 1) and its changes (2, 3).
        await page.wait_for_function(f"{timeline} === 3", polling=50, timeout=20_000)
        for phase in ("test", "review"):
            write_state("a1", issue_number="1", status="running", current_phase=phase)
            await page.wait_for_function(
                "(p) => [...document.querySelectorAll('#timeline-rows li button')].at(-1)?.textContent.endsWith(p)",
                arg=phase,
                polling=50,
            )
        steps = await page.evaluate(
            "[...document.querySelectorAll('#timeline-rows li button')].map((b) => b.textContent)"
        )
        assert steps[:2] == ["first state recorded", "phase plan → build"]
        assert steps[-2:] == ["phase build → test", "phase test → review"] and len(steps) == 5, steps
    finally:
        await page.close()
        await service.stop()


async def test_the_python_client_asks_for_patches_again_after_a_gap(workspace, write_state) -> None:
    write_state("a1", issue_number="1", status="running", current_phase="plan")
    service = await Service(workspace.root, service_config(workspace, free_port())).start()
    try:
        async with Between(service.port) as between:
            seen: list[dict[str, Any]] = []
            patched = [0]

            def drop(frame: dict[str, Any]) -> bool:  # the first patch is lost on the way: a gap
                if frame.get("channel") == "adw-monitor" and "patch" in frame:
                    patched[0] += 1
                    return patched[0] == 1
                return False

            between.drop = drop

            async def follow() -> None:
                async for message in subscribe(between.url, ["adw-monitor"]):
                    seen.append(message)

            def shows(phase: str) -> Callable[[], bool]:
                return lambda: bool(seen) and seen[-1]["data"]["workflows"][0]["current_phase"] == phase

            task = asyncio.create_task(follow())
            try:
                await eventually(shows("plan"))
                write_state("a1", issue_number="1", status="running", current_phase="build")
                await eventually(lambda: patched[0] == 1)  # dropped: the client does not know yet
                write_state("a1", issue_number="1", status="running", current_phase="test")
                await eventually(shows("test"))  # its patch did not fit: it subscribed again, got the whole state
                write_state("a1", issue_number="1", status="running", current_phase="review")
                await eventually(shows("review"))
            finally:
                task.cancel()
            assert between.sent[-1] == {"type": "subscribe", "channels": ["adw-monitor"], "patches": True}
            monitor = [f for f in between.received if f.get("channel") == "adw-monitor"]
            assert "patch" in monitor[-1], monitor[-1]  # the change after the gap came as a patch again
            assert steady(seen[-1]["data"]) == steady(await served(service, "adw-monitor"))
    finally:
        await service.stop()
