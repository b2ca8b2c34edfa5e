"""Keyed deltas of list channels: what one change did to a list of items with ids, and back.

A channel whose data is (or holds) a list of items keyed by an id (``adw_id``, ``queue_id``)
changes one item at a time: one ADW's state file, one queue row. The event log stores such a
change as a delta against the channel's previous event instead of the whole list, so its bytes
grow with what changed, not with the number of items. A delta is::

    {"set": [[id, index, item], ...], "del": [id, ...], "rest": {other top-level fields}}

``set`` holds every new or changed item with its index in the new list, ``del`` the ids gone;
rebuilding drops both from the old order and inserts the set items at their indices. That is
exact whenever the unchanged items kept their relative order (true for every sorted list here);
when they did not, or ids are missing or repeated, there is no delta and the whole data is
stored. Lists are used instead of objects keyed by id so that redaction, which works by key
name, can never mistake an id for a credential key.

Finding the changed items costs a few C-level passes over the ids (identity first: ``adw_index``
hands out the same encoded item object while an ADW is unchanged); no item is re-encoded.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any

import orjson


class Items(list[Any]):
    """A list of channel items that knows each item's id (``ids[i]`` is the id of ``self[i]``).

    Serialises as a plain list; it only saves finding ids in items that are already encoded.
    """

    __slots__ = ("clocks", "ids")

    def __init__(self, items: list[Any], ids: list[str], clocks: list[Any] | None = None) -> None:
        super().__init__(items)
        self.ids = ids  # unique by construction: whoever builds Items vouches for that
        # Per item, what its clock-derived fields are computed from (None: it has none); the
        # channel's builder and its clock values agree on what that is (adw-monitor: ``Clocks``).
        self.clocks = clocks


@dataclass(frozen=True, slots=True)
class Keyed:
    """Where a channel's keyed list is: ``field`` of its data ("" for the data itself), ids under ``key``."""

    field: str
    key: str | tuple[str, ...]  # a tuple: the id is those fields' values joined by a space ("GET /api/x")


@dataclass(slots=True)
class Base:
    """A channel's list as of one event, ready to diff the next event against or to apply a delta to."""

    ids: list[str]
    items: dict[str, Any]
    rest: dict[str, Any]
    values: list[Any] | None = None  # the items in order, when at hand (``values[i]`` is ``items[ids[i]]``)


def split(data: Any, keyed: Keyed) -> tuple[list[Any], list[str], dict[str, Any]] | None:
    """Return the list of ``data``, its ids and the other top-level fields; None if it has no usable ids."""
    if keyed.field:
        if not isinstance(data, dict) or not isinstance(data.get(keyed.field), list):
            return None
        items = data[keyed.field]
        rest = {k: v for k, v in data.items() if k != keyed.field}
    elif isinstance(data, list):
        items, rest = data, {}
    else:
        return None
    if isinstance(items, Items):
        return items, items.ids, rest
    found = [_id(item, keyed.key) for item in items]
    ids: list[str] = [i for i in found if isinstance(i, str)]
    if len(ids) != len(found) or len(set(ids)) != len(ids):
        return None
    return items, ids, rest


def _id(item: Any, key: str | tuple[str, ...]) -> Any:
    if not isinstance(item, dict):
        return None
    if isinstance(key, str):
        return item.get(key)
    parts = [item.get(k) for k in key]
    strings = [p for p in parts if isinstance(p, str)]
    return " ".join(strings) if len(strings) == len(parts) else None


def base_of(data: Any, keyed: Keyed) -> Base | None:
    """Return the Base of ``data`` (None if its list has no usable ids)."""
    parts = split(data, keyed)
    if parts is None:
        return None
    items, ids, rest = parts
    return Base(ids, dict(zip(ids, items, strict=True)), rest, items)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, orjson.Fragment) or isinstance(new, orjson.Fragment):
        return orjson.dumps(old) == orjson.dumps(new)
    return bool(old == new)


def _differing(old: list[Any], new: list[Any]) -> list[int]:
    """Return the indices where two lists of one length differ, in order.

    Halves are compared as slices (C-level, identity first, so unchanged encoded items cost a
    pointer comparison): a few changes in a long list cost a few dozen slice comparisons, not a
    Python step per item.
    """
    found: list[int] = []
    pending = [(0, len(new))]
    while pending:
        lo, hi = pending.pop()
        if old[lo:hi] == new[lo:hi]:
            continue
        if hi - lo <= 8:
            found.extend(i for i in range(lo, hi) if old[i] is not new[i] and old[i] != new[i])
            continue
        mid = (lo + hi) // 2
        pending += ((mid, hi), (lo, mid))
    return found


def diff(base: Base, data: Any, keyed: Keyed) -> tuple[dict[str, Any], Base] | None:
    """Return the delta from ``base`` to ``data`` and the Base of ``data``; None when only whole data will do."""
    parts = split(data, keyed)
    if parts is None:
        return None
    items, ids, rest = parts
    # The same ids in the same order (most changes): compare item by item, no lookups by id.
    same_order = base.values is not None and ids == base.ids
    olds = base.values if same_order and base.values is not None else list(map(base.items.get, ids))
    changed = [i for i in _differing(olds, items) if olds[i] is None or not _same(olds[i], items[i])]
    removed: list[str] = []
    if not same_order:
        added = sum(1 for i in changed if olds[i] is None)
        if len(base.ids) + added != len(ids):
            present = set(ids)
            removed = [i for i in base.ids if i not in present]
        moved = {ids[i] for i in changed}.union(removed)
        order = list(itertools.filterfalse(moved.__contains__, base.ids))
        for i in changed:
            order.insert(i, ids[i])
        if order != ids:
            return None  # an unchanged item moved: the delta would not rebuild this order
    new_items = base.items  # the base is used up: the writer keeps only the newest
    for gone in removed:
        del new_items[gone]
    for i in changed:
        new_items[ids[i]] = items[i]
    delta: dict[str, Any] = {"set": [[ids[i], i, items[i]] for i in changed], "del": removed}
    if keyed.field:
        delta["rest"] = rest
    return delta, Base(ids, new_items, rest, items)


def apply(base: Base, delta: Any, keyed: Keyed) -> Base:
    """Return the Base that ``delta`` makes of ``base`` (which it uses up); raise ValueError if it does not fit."""
    try:
        sets = [(str(i), int(index), item) for i, index, item in delta["set"]]
        gone = [str(i) for i in delta["del"]]
        rest = dict(delta["rest"]) if keyed.field else {}
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"not a delta: {exc}") from None
    drop = set(gone).union(i for i, _, _ in sets)
    order = list(itertools.filterfalse(drop.__contains__, base.ids))
    items = base.items
    for i in gone:
        items.pop(i, None)
    for i, index, item in sorted(sets, key=operator.itemgetter(1)):
        if not 0 <= index <= len(order):
            raise ValueError(f"index {index} out of range")
        order.insert(index, i)
        items[i] = item
    return Base(order, items, rest)


def data_of(base: Base, keyed: Keyed) -> Any:
    """Return the channel data a Base stands for."""
    items = base.items
    listed = [items[i] for i in base.ids]
    return {keyed.field: listed, **base.rest} if keyed.field else listed
