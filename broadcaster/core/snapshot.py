"""Canonical bytes of a channel's data, without its volatile fields, and their digest.

Two snapshots with the same digest are the same state: nothing is sent for them. Volatile
fields (anything derived from the clock) are left out so that time passing is not a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

# A path into the data: dict keys, with "*" for every item of a list or every value of a dict.
# The last element is always a key.
VolatilePath = tuple[str, ...]


def canonical(data: Any, volatile: Sequence[VolatilePath] = ()) -> bytes:
    """Encode ``data`` with sorted keys and the ``volatile`` paths left out."""
    for path in volatile:
        data = _without(data, path)
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def digest(data: Any, volatile: Sequence[VolatilePath] = ()) -> str:
    """Return a short hex digest of the canonical bytes of ``data``."""
    return hashlib.blake2b(canonical(data, volatile), digest_size=16).hexdigest()


def _without(data: Any, path: VolatilePath) -> Any:
    """Return ``data`` with ``path`` removed, copying only the containers along the path."""
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(data, list):
            return [_without(item, rest) for item in data]
        if isinstance(data, dict):
            return {k: _without(v, rest) for k, v in data.items()}
        return data
    if not isinstance(data, dict) or head not in data:
        return data
    if not rest:
        return {k: v for k, v in data.items() if k != head}
    copy = dict(data)
    copy[head] = _without(data[head], rest)
    return copy
