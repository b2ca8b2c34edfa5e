"""The write path alone: what the hub spends per subscriber beyond the bare server's one write.

One process, N real WebSocket connections (aiohttp on the loop the service runs on, its clients
in a second process on the other core that read and discard). Over those same sockets, in
turns: the bare loop (``transport.write(frame)`` for each), ``Hub.publish`` of an event of the
same size to all of them as subscribers, and ``Hub.sweep`` with nothing due. Each is timed in
the process (``perf_counter``, no other work running); the table gives the median per client.
Because both loops write to the same sockets in the same run, the machine's noise, which moves
the whole-process figures of ``fanout.py`` by 10-20% between runs, mostly cancels out.

    .venv/bin/python bench/writepath.py --clients 1000 5000

It runs on the checkout it sits in; copied into a worktree of an older commit it measures that
commit's hub the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.channels.specs import CATALOG  # noqa: E402
from broadcaster.core.client import Client  # noqa: E402
from broadcaster.core.events import Event  # noqa: E402
from broadcaster.core.hub import Hub  # noqa: E402
from broadcaster.core.protocol import encode_event, ws_frame  # noqa: E402

try:
    from broadcaster.core.client import Socket
except ImportError:  # a checkout from before issue 20 (run from a worktree of it): measured the same way
    Socket = web.WebSocketResponse  # type: ignore[misc,assignment]

READERS = """
import asyncio, base64, os, sys
if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
    os.sched_setaffinity(0, {1})
async def main(port, n):
    loop = asyncio.get_running_loop()
    class Discard(asyncio.Protocol):
        def data_received(self, data): pass
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
               f"Sec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n").encode()
    for start in range(0, n, 200):
        batch = range(min(200, n - start))
        made = await asyncio.gather(*(loop.create_connection(Discard, "127.0.0.1", port) for _ in batch))
        for transport, _ in made:
            transport.write(request)
    await asyncio.Event().wait()
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""
STATE = {"adw_id": "a1", "issue_number": "42", "status": "running", "pad": "p" * 1560}  # ~1.65 KB as in fanout.py


async def measure(n: int, rounds: int) -> dict[str, float]:
    options: dict[str, Any] = {"sweep_interval": 1.0} if "sweep_interval" in inspect.signature(Hub).parameters else {}
    hub = Hub(catalog=CATALOG, **options)
    clients: list[Client] = []
    transports: list[asyncio.Transport] = []
    everyone = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = Socket(compress=False, autoping=False, heartbeat=None)
        await ws.prepare(request)
        assert request.transport is not None
        client = Client(ws, heartbeat_interval=3600, write_timeout=60, transport=request.transport)
        hub.attach(client, "adw-state:a1", send_current=False)
        clients.append(client)
        transports.append(request.transport)
        if len(clients) == n:
            everyone.set()
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    readers = subprocess.Popen([sys.executable, "-c", READERS, str(runner.addresses[0][1]), str(n)])
    times: dict[str, list[float]] = {"bare": [], "hub": [], "sweep": []}
    try:
        await asyncio.wait_for(everyone.wait(), 60)
        hub.publish(Event("adw-state:a1", 1, "adw_state_update", {**STATE, "step": 0}, "d0", time.time()))
        await asyncio.sleep(0.5)  # every socket's first frame (with the epoch) is out and read
        for step in range(1, rounds + 1):
            event = Event(
                "adw-state:a1", step + 1, "adw_state_update", {**STATE, "step": step}, f"d{step}", time.time()
            )
            frame = ws_frame(encode_event(event))  # what the bare server writes: one frame, built once
            started = time.perf_counter()
            for transport in transports:
                transport.write(frame)
            times["bare"].append(time.perf_counter() - started)
            await asyncio.sleep(0.05)  # the readers drain the sockets
            started = time.perf_counter()
            hub.publish(event)
            times["hub"].append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            hub.sweep()
            times["sweep"].append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    finally:
        readers.kill()
        readers.wait()
        await runner.cleanup()
    return {kind: statistics.median(values) / n * 1e6 for kind, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    try:
        import uvloop
    except ImportError:
        run: Any = asyncio.run
        loop = "asyncio"
    else:
        run, loop = uvloop.run, "uvloop"
    print("| N | loop | bare write us/client | hub.publish us/client | over bare | sweep (none due) us/client |")
    print("|---|---|---|---|---|---|")
    for n in args.clients:
        r = run(measure(n, args.rounds))
        print(
            f"| {n:,} | {loop} | {r['bare']:.2f} | {r['hub']:.2f} | +{r['hub'] - r['bare']:.2f} us "
            f"({r['hub'] / r['bare']:.2f}x) | {r['sweep']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
