"""``adw-broadcaster watch CHANNEL...``: follow channels in a terminal, one line per change.

    $ adw-broadcaster watch adw-monitor queue
    10:00:01 adw-monitor #17 snapshot: 3 ADWs (2 running, 1 failed)
    10:00:04 adw-monitor #18 a1b2c3d4 build->test
    10:00:05 queue #9 q-12 pending->running

``--json`` prints each message as received (whole data) one per line, for ``jq``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import orjson

from .stream import subscribe

DEFAULT_URL = "http://127.0.0.1:8002"
Summary = Callable[[Any, Any], str]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``watch``'s command line."""
    parser = argparse.ArgumentParser(
        prog="adw-broadcaster watch", description="Follow channels of a running service, one line per change."
    )
    parser.add_argument("channels", nargs="+", metavar="CHANNEL", help="queue, adw-monitor, adw-state:{adw_id}, ...")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="print each message as JSON, one per line")
    parser.add_argument(
        "--retry-for",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up after this long without a connection (default 60)",
    )
    parser.add_argument("--token", help="bearer token, when the service wants one")
    return parser.parse_args(argv)


def main(argv: list[str], out: TextIO = sys.stdout) -> int:
    """Run ``watch``; return the exit code (0 on Ctrl-C or when the reader of its output stops, 1 when the
    service cannot be reached, 2 for usage)."""
    args = parse_args(argv)
    try:
        asyncio.run(follow(args, out))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader stopped (``watch ... | head``): done, as for cat
        if out is sys.stdout:
            # Python flushes stdout once more on the way out, which would fail (and print) again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ValueError as exc:
        print(f"adw-broadcaster watch: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"adw-broadcaster watch: {exc}", file=sys.stderr)
        return 1
    return 0


async def follow(args: argparse.Namespace, out: TextIO) -> None:
    """Print the channels' messages until cancelled."""
    held: dict[str, Any] = {}
    async for message in subscribe(args.url, args.channels, token=args.token, retry_for=args.retry_for):
        if args.json:
            out.write(orjson.dumps(message).decode() + "\n")
        else:
            out.write(line(message, held.get(message["channel"])) + "\n")
        out.flush()
        held[message["channel"]] = message.get("data")


def line(message: dict[str, Any], before: Any) -> str:
    """Return the terminal line of one message, given the channel's data before it (None: none yet)."""
    channel, data = message["channel"], message.get("data")
    stamp = str(message.get("timestamp", ""))
    clock = _clock(stamp)
    head = f"{clock} {channel} #{message.get('seq')}"
    if message.get("recovered") is not None:
        head += " recovered" if message["recovered"] else " resynced"
    summary = SUMMARIES.get(channel.partition(":")[0], _generic)
    with contextlib.suppress(Exception):  # a summary is a nicety: odd data still gets its line
        return f"{head} {summary(before, data)}"
    return f"{head} changed"


def _clock(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return stamp[:8] or "--:--:--"


def _by(items: Any, key: str) -> dict[str, dict[str, Any]]:
    return {str(i.get(key)): i for i in items if isinstance(i, dict)} if isinstance(items, list) else {}


def _moves(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], fields: tuple[str, ...]) -> str:
    """Return what moved between two id -> item maps: new, gone, and field changes."""
    parts = []
    for key, item in after.items():
        old = before.get(key)
        if old is None:
            parts.append(f"{key} new ({', '.join(str(item.get(f)) for f in fields)})")
            continue
        moved = [f"{old.get(f)}->{item.get(f)}" for f in fields if old.get(f) != item.get(f)]
        if moved:
            parts.append(f"{key} {' '.join(moved)}")
    parts += [f"{key} gone" for key in before if key not in after]
    return ", ".join(parts) or "no status or phase moved"


def _counts(items: list[dict[str, Any]], field: str) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item.get(field))] = counts.get(str(item.get(field)), 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def _monitor(before: Any, data: Any) -> str:
    after = _by(data["workflows"], "adw_id")
    if before is None:
        return f"snapshot: {len(after)} ADWs ({_counts(list(after.values()), 'status')})"
    return _moves(_by(before["workflows"], "adw_id"), after, ("status", "current_phase"))


def _queue(before: Any, data: Any) -> str:
    after = _by(data["phases"], "queue_id")
    paused = " (paused)" if data.get("paused") else ""
    if before is None:
        return f"snapshot: {len(after)} phases{paused}"
    return _moves(_by(before["phases"], "queue_id"), after, ("status",)) + paused


def _workflows(before: Any, data: Any) -> str:
    after = _by(data, "adw_id")
    if before is None:
        return f"snapshot: {len(after)} workflows"
    return _moves(_by(before, "adw_id"), after, ("phase",))


def _history(before: Any, data: Any) -> str:
    rate = data.get("analytics", {}).get("success_rate")
    return f"{data.get('total_count')} runs, success rate {rate}"


def _state(before: Any, data: Any) -> str:
    if before is None:
        return f"snapshot: {data.get('status')} {data.get('current_phase')}"
    changed = [k for k in data if before.get(k) != data[k]] + [k for k in before if k not in data]
    shown = [f"{k}={data.get(k)}" for k in changed if k in ("status", "current_phase", "current_cost", "last_error")]
    return " ".join(shown) or f"changed: {', '.join(changed[:5])}"


def _system(before: Any, data: Any) -> str:
    services = data.get("services", {})
    wrong = [f"{name} {s.get('status')}" for name, s in services.items() if s.get("status") != "healthy"]
    return f"{data.get('overall_status')}" + (f": {', '.join(wrong)}" if wrong else "")


def _webhook(before: Any, data: Any) -> str:
    return f"{data.get('status')}" + (f": {data['message']}" if data.get("message") else "")


def _alerts(before: Any, data: Any) -> str:
    now = _by(data["open"], "id")
    if before is None:
        waiting = sum(1 for a in now.values() if not a.get("acknowledged"))
        return f"snapshot: {len(now)} open ({waiting} not acknowledged)" + "".join(
            f"; {a.get('title')}" for a in now.values()
        )
    was = _by(before["open"], "id")
    parts = [
        f"opened [{a.get('severity')}] {a.get('title')}: {a.get('text')} {a.get('link')}"
        for i, a in now.items()
        if i not in was
    ]
    parts += [f"resolved {a.get('title')}" for i, a in was.items() if i not in now]
    parts += [
        f"acknowledged {i}" for i, a in now.items() if a.get("acknowledged") and not was.get(i, a).get("acknowledged")
    ]
    return "; ".join(parts) or "changed"


def _generic(before: Any, data: Any) -> str:
    return f"{len(data)} items" if isinstance(data, list) else "changed"


SUMMARIES: dict[str, Summary] = {
    "adw-monitor": _monitor,
    "queue": _queue,
    "workflows": _workflows,
    "workflow-history": _history,
    "adw-state": _state,
    "system-status": _system,
    "webhook-status": _webhook,
    "alerts": _alerts,
}
