"""Process scan: 1,000 ADWs and 1,000 unrelated processes; CPU per look and the service's idle CPU.

Starts ``--others`` unrelated processes (``sleep``) and, for a tenth of the ADWs, a process whose
command line holds the ADW id, so a look has both kinds to tell apart. Then:

1. one ``ProcessTable.scan`` over ``--adws`` ids in this process, ``--looks`` times: CPU per look
   (process time, median) and wall time;
2. the service as a process (pinned to core 0 when ``taskset`` exists) over that workspace, quiet,
   with ``[adw] process_scan`` on (every 5 s, the default) and then off: its CPU over ``--seconds``
   as a percentage of one core, and the ratio on/off (the baseline, measured in the same run).

Target (issue 23): idle CPU still under 1% of a core with 1,000 ADWs and the 5 s scan.

    .venv/bin/python bench/processes.py --adws 1000 --others 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, launch, stop
from common import pin as pin_to

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sources.processes import ProcessTable  # noqa: E402  (after the path: run from a checkout)


def workspace(adws: int) -> Path:
    work = Path(tempfile.mkdtemp(prefix="processes-"))
    for n in range(adws):
        d = work / "agents" / f"adw{n:05d}"
        (d / "adw_plan_iso").mkdir(parents=True)
        state = {"adw_id": d.name, "issue_number": str(n), "status": "running", "start_time": "2026-12-07T10:00:00"}
        (d / "adw_state.json").write_text(json.dumps(state))
    (work / "trees").mkdir()
    return work


def config(work: Path, scan: bool) -> None:
    (work / "config.toml").write_text(
        '[server]\nport = 0\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        f"[adw]\nprocess_scan = {str(scan).lower()}\n"
    )


def spawn(others: int, ids: list[str]) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(others)]
    # argv[0] holds the id (bash's exec -a), as an agent's command line would
    procs += [subprocess.Popen(["bash", "-c", f'exec -a "adw-agent {adw_id}" sleep 600']) for adw_id in ids]
    return procs


def looks(work: Path, ids: list[str], count: int) -> tuple[list[float], list[float], int, int]:
    table = ProcessTable(work / "agents", work / "trees")
    cpu, wall = [], []
    found = processes = 0
    for _ in range(count):
        started, started_cpu = time.perf_counter(), time.process_time()
        scan = table.scan(ids)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
        found, processes = len(scan.pids), scan.processes
    return cpu, wall, found, processes


async def idle_cpu(work: Path, scan: bool, seconds: float) -> float:
    config(work, scan)
    proc, _ = await launch(work, prefix=pin_to(0))
    try:
        await asyncio.sleep(10)  # start-up done: the first read and look are behind it
        before, at = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        return (cpu_seconds(proc.pid) - before) / (time.monotonic() - at) * 100
    finally:
        stop(proc, work, keep=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adws", type=int, default=1000)
    parser.add_argument("--others", type=int, default=1000)
    parser.add_argument("--looks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    work = workspace(args.adws)
    ids = sorted(p.name for p in (work / "agents").iterdir())
    procs = spawn(min(args.others, 5000), ids[: args.adws // 10])
    try:
        cpu, wall, found, processes = looks(work, ids, min(args.looks, 200))
        print(f"one look: {processes} processes, {args.adws} ADW ids, {found} ADWs with a process")
        print("| look | CPU ms (median / max) | wall ms (median / max) |\n|---|---|---|")
        print(
            f"| ProcessTable.scan | {statistics.median(cpu) * 1000:.1f} / {max(cpu) * 1000:.1f} "
            f"| {statistics.median(wall) * 1000:.1f} / {max(wall) * 1000:.1f} |"
        )
        on = await idle_cpu(work, True, args.seconds)
        off = await idle_cpu(work, False, args.seconds)
        print(f"\n| service, quiet, {args.seconds:g} s | CPU % of a core |\n|---|---|")
        print(f"| process_scan = true (every 5 s) | {on:.2f} |")
        print(f"| process_scan = false (baseline) | {off:.2f} |")
        print(f"| on - off | {on - off:.2f} (ratio {on / off if off else float('inf'):.2f}x) |")
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
