"""What nodes and views share on Redis: key names and the fields of a stream entry.

- ``adwb:ch:{node}:{channel}``: a Stream per node and channel, ``XADD ... MAXLEN ~ keep_per_channel``,
  entries ``node, seq, type, data (JSON), timestamp``. Per node, so one busy node's entries never
  trim away a quiet node's newest state: a view always finds each node's newest entry at the top.
- ``adwb:changes:{node}``: a Stream that says which channels each of the node's batches wrote
  (``session``, ``n``: the batch's number in that session, ``channels``: one per line). A view
  follows these few streams with a blocking ``XREAD`` and fetches only the channels they name,
  so its read costs the same with 10 ADWs or 10,000; a gap in ``n`` (or a new session) makes it
  fetch all of that node's channels again.
- ``adwb:node:{node}``: the node's record (JSON: name, version, address, last_seen, instance: one
  per run, refresh_interval, problem: what keeps it from publishing, or null), set with an expiry
  of ``node_timeout`` at every refresh: while it exists the node is alive. A node reads it before
  each refresh: another instance's record there twice in a row means two runs share one name.
- ``adwb:nodes``: a hash of every node that ever published, ``{node: its last record}``; it
  never expires, so a view started after a node died still knows of it (and for how long).

The view only reads: it never writes, trims or deletes anything on Redis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..channels.specs import spec_of, validate_adw_id
from ..core.events import Event
from ..errors import InvalidAdwId

NODES = "adwb:nodes"
NODE_RECORD = "adwb:node:"
STREAM = "adwb:ch:"
CHANGES = "adwb:changes:"
INDEX_KEEP = 1000  # entries of a changes index (~): a view further behind than this reads the node whole
NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def stream_key(node: str, channel: str) -> str:
    """Return the stream of ``node``'s ``channel``."""
    return f"{STREAM}{node}:{channel}"


def changes_key(node: str) -> str:
    """Return the stream that lists which channels each of ``node``'s batches wrote."""
    return CHANGES + node


def change_entry(session: str, n: int, channels: Iterable[str]) -> dict[Any, Any]:
    """Return the fields of one batch's entry in the changes index."""
    return {"session": session, "n": n, "channels": "\n".join(channels)}


def decode_change(fields: Any) -> tuple[str, int, list[str]]:
    """Return (session, n, channels) of a changes-index entry; raise ``BadEntry`` for anything else."""
    try:
        session = fields[b"session"].decode()
        n = int(fields[b"n"])
        channels = fields[b"channels"].decode().split("\n")
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise BadEntry(f"changes entry without session, n and channels ({type(exc).__name__}: {exc})") from None
    return session, n, channels


def entry(node: str, event: Event) -> dict[Any, Any]:
    """Return the stream fields of one event."""
    return {
        "node": node,
        "seq": event.seq,
        "type": event.type,
        "data": orjson.dumps(event.data, option=orjson.OPT_NON_STR_KEYS),
        "timestamp": repr(event.timestamp),
        "digest": event.digest,  # of the data without its clock-derived fields: a view need not hash it again
    }


def entry_digest(fields: Any) -> str | None:
    """Return the digest an entry carries, if it carries a plausible one."""
    raw = fields.get(b"digest")
    return raw.decode("ascii", "replace") if isinstance(raw, bytes) and 0 < len(raw) <= 128 else None


class BadEntry(ValueError):
    """A stream entry the view cannot use (its message says why)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A node's record as the hash ``adwb:nodes`` keeps it."""

    name: str
    last_seen: float  # the node's clock, epoch seconds
    version: str = ""
    address: str = ""
    instance: str = ""  # one per run of the node: two at once under one name is an error
    refresh_interval: float = 3.0  # how often the node refreshes it: a record not moving for longer is late
    problem: str = ""  # what keeps the node from publishing ("" for nothing)


def decode_record(name: Any, raw: Any) -> Record:
    """Return the record of a field of ``adwb:nodes``; raise ``BadEntry`` for anything else."""
    node = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    if not NODE_NAME.fullmatch(node):
        raise BadEntry(f"node name {node[:80]!r} is not 1-64 letters, digits, '_', '.', '-'")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEntry(f"node {node}: record is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise BadEntry(f"node {node}: record is not an object")
    seen = record.get("last_seen")
    if not isinstance(seen, int | float) or isinstance(seen, bool):  # JSON has no NaN or infinity
        raise BadEntry(f"node {node}: record has no numeric last_seen")
    every = record.get("refresh_interval")
    every = float(every) if isinstance(every, int | float) and not isinstance(every, bool) else 3.0
    return Record(
        node,
        float(seen),
        str(record.get("version", ""))[:40],
        str(record.get("address", ""))[:200],
        instance=str(record.get("instance") or "")[:64],
        refresh_interval=min(max(every, 0.05), 3600.0),
        problem=str(record.get("problem") or "")[:500],
    )


def decode_data(node: str, channel: str, fields: Any, max_bytes: int | None = None) -> Any:
    """Return the channel data of one stream entry of ``node``; raise ``BadEntry`` if it is not one (or too big)."""
    if not isinstance(fields, dict):
        raise BadEntry(f"{stream_key(node, channel)}: entry is not a field map")
    try:
        spec = spec_of(channel)
    except (InvalidAdwId, KeyError, ValueError) as exc:
        raise BadEntry(f"{stream_key(node, channel)}: unknown channel ({exc})") from None
    kind = fields.get(b"type")
    if kind != spec.type.encode():
        raise BadEntry(f"{stream_key(node, channel)}: entry type {kind!r:.60} is not {spec.type}")
    raw = fields.get(b"data")
    if raw is None:
        raise BadEntry(f"{stream_key(node, channel)}: entry has no data")
    if max_bytes is not None and len(raw) > max_bytes:
        where = stream_key(node, channel)
        raise BadEntry(f"{where}: entry of {len(raw):,} bytes, over [backplane] max_entry_bytes ({max_bytes:,})")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEntry(f"{stream_key(node, channel)}: data is not JSON ({exc})") from None


def checked_items(node: str, channel: str, data: Any) -> tuple[Any, list[str]]:
    """Return ``data`` without the items that are not objects with a usable id, and why each went.

    Raises:
        BadEntry: the data does not have the channel's shape at all.
    """
    keyed = spec_of(channel).keyed  # where the channel keeps its items ("" for the data itself)
    if keyed is None:
        return data, []
    field = keyed.field
    # Items of the ADW channels need their id: it names a channel and a directory. Queue rows of a
    # database with other columns have no queue_id: they are served too.
    key = keyed.key if keyed.key == "adw_id" else None
    items = data if not field else data.get(field) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise BadEntry(f"{stream_key(node, channel)}: data has no list of items")
    kept, problems = [], []
    for i, item in enumerate(items):
        why = None if isinstance(item, dict) else "not an object"
        if why is None and key is not None:  # the ADW channels: the id names a channel and a directory
            try:
                validate_adw_id(item[key] if isinstance(item.get(key), str) else "")
            except InvalidAdwId as exc:
                why = str(exc)
        if why is None:
            kept.append(item)
        else:
            problems.append(f"{stream_key(node, channel)}: item {i} skipped ({why})")
    if not problems:
        return data, []
    return (kept if not field else {**data, field: kept}), problems
