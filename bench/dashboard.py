"""Dashboard: how long the page takes to draw a one-ADW change with 1,000 ADWs, in Chromium.

The service runs on a workspace of ``--size`` realistic state files (see ``scale.py``); the
dashboard is open in Debian's headless Chromium (Playwright). Each change moves one random ADW to
its next phase; the page records, per monitor message, the script time of drawing it and the
time until the next frame was painted (``window.dashboard.draws``). The baseline, in the same
page on the same data right after each change: the naive way, the whole table rebuilt
(``innerHTML`` of every row) into a second table of the same style, timed the same way.
Printed: min / median / max of each, and the ratio of medians.

Target (issue 11): a change drawn in under 100 ms with 1,000 ADWs.

    .venv/bin/python bench/dashboard.py --size 1000 --changes 20
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
from pathlib import Path
from typing import Any

from common import launch, run_sized, stop
from playwright.async_api import async_playwright
from scale import layout, pause, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import CHROMIUM, CHROMIUM_FLAGS

PHASES = ["adw_plan_iso", "adw_build_iso", "adw_test_iso", "adw_review_iso", "adw_document_iso", "adw_ship_iso"]

NAIVE = """async () => {
    let table = document.getElementById("naive");
    if (!table) {
        table = document.createElement("table");
        table.id = "naive";
        table.style.cssText = "position: absolute; top: 0; left: 0; width: 1200px; z-index: -1";
        document.body.append(table);
    }
    const items = window.dashboard.last.workflows;
    const text = (v) => String(v ?? "").replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);
    const started = performance.now();
    table.innerHTML = "<tbody>" + items.map((i) => `<tr><td><span class="badge">${text(i.status)}</span></td>
        <td><a href="${text(i.github_url)}">#${text(i.issue_number)}</a><span class="title">${text(i.title)}</span></td>
        <td><span class="phase-name">${text(i.current_phase)}</span><div class="phases"><span></span><span></span>
        <span></span><span></span><span></span><span></span></div></td><td>${text(i.duration_seconds)}</td>
        <td>$${text(i.current_cost)} / $${text(i.estimated_cost_total)}</td>
        <td>${text(i.last_error)}</td></tr>`).join("") + "</tbody>";
    const ms = performance.now() - started;
    const frame = (done) => requestAnimationFrame(() => setTimeout(() => done(performance.now() - started)));
    const painted = await new Promise(frame);
    return { ms, painted };
}"""


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


async def run(size: int, changes: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    work, states = layout(size, rng)
    proc, port = await launch(work)
    found: dict[str, list[float]] = {"ms": [], "painted": [], "naive_ms": [], "naive_painted": []}
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_function(
                f"document.querySelectorAll('#monitor-rows tr').length === {size}", timeout=120_000
            )
            ids = list(states)
            for _ in range(changes):
                before: int = await page.evaluate("window.dashboard.draws.length")
                adw_id = rng.choice(ids)
                directory = work / "agents" / adw_id
                done = sorted(p.name for p in directory.iterdir() if p.is_dir())
                (directory / PHASES[len(done) % len(PHASES)]).mkdir(exist_ok=True)
                states[adw_id] = {**states[adw_id], "current_cost": rng.random()}
                write(work / "agents", adw_id, states[adw_id])
                await page.wait_for_function(
                    f"window.dashboard.draws.length > {before} && window.dashboard.draws.at(-1).painted !== null",
                    timeout=30_000,
                )
                draw: dict[str, Any] = await page.evaluate("window.dashboard.draws.at(-1)")
                found["ms"].append(draw["ms"])
                found["painted"].append(draw["painted"])
                naive: dict[str, float] = await page.evaluate(NAIVE)
                found["naive_ms"].append(naive["ms"])
                found["naive_painted"].append(naive["painted"])
                await asyncio.sleep(pause(rng))
            await browser.close()
    finally:
        stop(proc, work, timeout=20)
    return found


async def bench(size: int, changes: int, seed: int) -> None:
    found = await run(size, changes, seed)
    print(f"{size} ADWs, {changes} one-ADW changes; ms, min / median / max")
    print("| draw | script ms | until painted ms |\n|---|---|---|")
    print(f"| dashboard (rows in place) | {spread(found['ms'])} | {spread(found['painted'])} |")
    print(f"| naive (whole table rebuilt) | {spread(found['naive_ms'])} | {spread(found['naive_painted'])} |")
    ratio = statistics.median(found["painted"]) / statistics.median(found["naive_painted"])
    print(f"dashboard / naive, until painted: {ratio:.2f}x")


def main() -> None:
    run_sized(__doc__ or "", bench, changes=20)


if __name__ == "__main__":
    main()
