"""Patches: bytes a one-ADW change costs a ``/ws`` subscriber with and without ``patches``.

One service process on a workspace of ``--size`` realistic state files (see ``scale.py``); two
clients in this process on ``/ws?channels=adw-monitor,workflows``, one with ``&patches=1``. Of
the ``--changes`` one-ADW changes, three in four move a random ADW to its next phase and one in
four starts a new ADW (its item full of nulls: no end_time, no error yet); both channels change
each time. The bytes each client receives per change are summed per channel and kind. Printed
per kind and channel: bytes per change for the whole client (the baseline, measured in the same
run) and the patch client, the ratio; and how many frames the patch client got whole (a change
a merge patch cannot carry exactly, see ``broadcaster/patches.py``).

Target (issue 10): at 1,000 ADWs a one-ADW change costs a patch subscriber under 2% of the
whole message.

    .venv/bin/python bench/patches.py --size 1000 --changes 24
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import aiohttp
from common import launch, run_sized, stop
from scale import layout, pause, state, write

CHANNELS = ("adw-monitor", "workflows")
PHASES = ["adw_plan_iso", "adw_build_iso", "adw_test_iso", "adw_review_iso", "adw_document_iso", "adw_ship_iso"]


async def collect(
    ws: aiohttp.ClientWebSocketResponse, until: float, into: dict[str, list[int]], whole: list[int]
) -> None:
    """Add the size of every channel frame received before ``until`` (monotonic) to ``into[channel]``."""
    while (left := until - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            return
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"unexpected {msg.type}")
        message = json.loads(msg.data)
        channel = message.get("channel")
        if channel in into:
            into[channel].append(len(msg.data.encode()))
            if "patch" not in message:
                whole.append(1)


async def run(size: int, changes: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    work, states = layout(size, rng)
    proc, port = await launch(work)
    try:
        url = f"http://127.0.0.1:{port}/ws?channels={','.join(CHANNELS)}"
        kinds = ("move", "new")
        sizes = {(client, kind): {c: [] for c in CHANNELS} for client in ("whole", "patch") for kind in kinds}
        wholes: list[int] = []
        async with aiohttp.ClientSession() as session:
            whole = await session.ws_connect(url, max_msg_size=0)
            patch = await session.ws_connect(url + "&patches=1", max_msg_size=0)
            settle = time.monotonic() + 3.0  # subscribed + the first (whole) snapshots
            await asyncio.gather(
                collect(whole, settle, {c: [] for c in CHANNELS}, []),
                collect(patch, settle, {c: [] for c in CHANNELS}, []),
            )
            ids = list(states)
            for step in range(changes):
                kind = "new" if step % 4 == 3 else "move"
                if kind == "new":
                    adw_id = f"new{step:05x}"
                    (work / "agents" / adw_id / "adw_plan_iso").mkdir(parents=True)
                    states[adw_id] = {**state(adw_id, len(states), 0.0, rng), "status": "running"}
                else:
                    adw_id = rng.choice(ids)
                    directory = work / "agents" / adw_id
                    done = sorted(p.name for p in directory.iterdir() if p.is_dir())
                    nxt = PHASES[len(done) % len(PHASES)]
                    (directory / nxt).mkdir(exist_ok=True)
                    phase, cost = nxt.split("_")[1], rng.random()
                    states[adw_id] = {**states[adw_id], "current_phase": phase, "current_cost": cost}
                write(work / "agents", adw_id, states[adw_id])
                until = time.monotonic() + pause(rng) + 0.5
                await asyncio.gather(
                    collect(whole, until, sizes["whole", kind], []), collect(patch, until, sizes["patch", kind], wholes)
                )
            await whole.close()
            await patch.close()
        frames = sum(len(v) for kind in kinds for v in sizes["patch", kind].values())
        result: dict[str, Any] = {"wholes": len(wholes), "frames": frames}
        for kind in kinds:
            for channel in CHANNELS:
                got_whole, got_patch = sizes["whole", kind][channel], sizes["patch", kind][channel]
                if len(got_whole) != len(got_patch):
                    raise RuntimeError(f"{channel}: {len(got_whole)} whole frames but {len(got_patch)} patch frames")
                result[kind, channel] = (
                    sum(got_whole) / max(1, len(got_whole)),
                    sum(got_patch) / max(1, len(got_patch)),
                )
        return result
    finally:
        stop(proc, work, timeout=20)


async def bench(size: int, changes: int, seed: int) -> None:
    result = await run(size, changes, seed)
    print(f"{size} ADWs, {changes} one-ADW changes (patch frames sent whole: {result['wholes']} of {result['frames']})")
    print("| change | channel | whole B/change | patch B/change | patch / whole |\n|---|---|---|---|---|")
    for kind, label in (("move", "next phase"), ("new", "new ADW")):
        for channel in CHANNELS:
            whole, patch = result[kind, channel]
            print(f"| {label} | {channel} | {whole:,.0f} | {patch:,.0f} | {patch / whole:.2%} |")


def main() -> None:
    run_sized(__doc__ or "", bench, changes=24)


if __name__ == "__main__":
    main()
