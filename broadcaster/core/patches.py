"""RFC 7396 merge patches of list channels, in the keyed form of docs/protocol.md ("Patches").

A merge patch replaces arrays whole, so a list of items with ids is patched as
``{"items": {id: item}, "order": [id, ...]}``: a one-ADW change becomes
``{"items": {"77c90e61": {"current_phase": "test"}}}`` instead of the whole list. ``order`` is in
a patch only when the ids or their order changed. A channel whose list sits in a field
(``adw-monitor``'s ``workflows``) has that field in keyed form and its other fields beside it.

RFC 7396 cannot say "this member is now null" (null means "remove"), nor carry a new object that
holds a null, and items are full of nulls (``end_time``, ``last_error`` ...). So in keyed form
items are held without their null members, and ``"nulls": {id: [path, ...]}`` lists where each
item had one (a path is the list of keys down to it); turning the keyed form back into the list
puts them back. An ADW whose error clears is then ``{"items": {id: {"last_error": null}},
"nulls": {id: [["last_error"]]}}``. The other fields of the data (``summary``, ...) are patched as
they are; a change that would set one of them to null has no patch (``None``) and the subscriber
gets the whole message: exact data always.
"""

from __future__ import annotations

from typing import Any

import orjson

from .deltas import Base, Keyed, base_of, diff


class Unpatchable(Exception):
    """The change cannot be written as a merge patch (it sets a null)."""


def merge_diff(old: Any, new: Any) -> Any:
    """Return the merge patch that turns ``old`` into ``new`` (``{}`` when equal); raise Unpatchable."""
    if isinstance(old, dict) and isinstance(new, dict):
        patch: dict[str, Any] = {key: None for key in old if key not in new}
        for key, value in new.items():
            if key not in old:
                patch[key] = _whole(value)
            elif old[key] != value:
                if isinstance(value, dict) and isinstance(old[key], dict):
                    patch[key] = merge_diff(old[key], value)
                else:
                    patch[key] = _whole(value)
        return patch
    return _whole(new)


def _whole(value: Any) -> Any:
    """Return ``value`` as a patch member that sets it; raise Unpatchable if applying it would lose a null."""
    if value is None or isinstance(value, dict) and _holds_null(value):
        raise Unpatchable
    return value


def _holds_null(value: dict[str, Any]) -> bool:
    return any(v is None or isinstance(v, dict) and _holds_null(v) for v in value.values())


def split_nulls(item: Any) -> tuple[Any, list[list[str]]]:
    """Return ``item`` without its null members (in objects at any depth) and the paths to them."""
    paths: list[list[str]] = []

    def strip(value: dict[str, Any], at: list[str]) -> dict[str, Any]:
        kept = {}
        for key, member in value.items():
            if member is None:
                paths.append([*at, key])
            elif isinstance(member, dict):
                kept[key] = strip(member, [*at, key])
            else:
                kept[key] = member
        return kept

    return (strip(item, []) if isinstance(item, dict) else item), paths


def with_nulls(item: Any, paths: list[list[str]]) -> Any:
    """Return ``item`` with a null at each of ``paths`` (the inverse of ``split_nulls``); ``item`` is not changed."""
    if not paths or not isinstance(item, dict):
        return item
    whole = dict(item)
    for path in paths:
        node = whole
        for key in path[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[path[-1]] = None
    return whole


def _plain(item: Any) -> Any:
    """Return an item as plain data (items built by ``adw_index`` arrive already encoded)."""
    return orjson.loads(orjson.dumps(item)) if isinstance(item, orjson.Fragment) else item


class Patcher:
    """Make each event of one keyed channel a merge patch against the event before it."""

    __slots__ = ("_base", "_keyed", "seq", "subscribers")

    def __init__(self, keyed: Keyed) -> None:
        self._keyed = keyed
        self._base: Base | None = None
        self.seq = -1  # of the state the next patch starts from
        self.subscribers = 0  # clients that take its patches (the hub's count: at none it is dropped)

    def start(self, data: Any, seq: int) -> None:
        """Take ``data`` at ``seq`` as the state subscribers have."""
        self._base = base_of(data, self._keyed)
        self.seq = seq

    def patch(self, data: Any, seq: int) -> Any | None:
        """Return the merge patch from the last state to ``data`` at ``seq`` (the new last); None: send it whole."""
        base, keyed = self._base, self._keyed
        self._base = None
        if base is None:
            self.start(data, seq)
            return None
        self.seq = seq
        old_ids, old_items, old_rest = base.ids, dict(base.items), base.rest
        found = diff(base, data, keyed)  # uses up ``base``: hence the copies above
        if found is None:
            self.start(data, seq)
            return None
        delta, self._base = found
        try:
            items: dict[str, Any] = dict.fromkeys(delta["del"])
            nulls: dict[str, Any] = dict.fromkeys(delta["del"])
            for item_id, _index, item in delta["set"]:
                new, new_nulls = split_nulls(_plain(item))
                old = old_items.get(item_id)
                if old is None:
                    items[item_id] = new
                    nulls[item_id] = new_nulls or None  # None: also clears what an earlier item of that id had
                    continue
                stripped, old_nulls = split_nulls(_plain(old))
                items[item_id] = merge_diff(stripped, new)
                if new_nulls != old_nulls:
                    nulls[item_id] = new_nulls or None
            keyed_patch: dict[str, Any] = {"items": items} if items else {}
            if nulls:
                keyed_patch["nulls"] = nulls
            if self._base.ids != old_ids:
                keyed_patch["order"] = self._base.ids
            if not keyed.field:
                return keyed_patch
            patch = merge_diff(old_rest, delta["rest"])
        except Unpatchable:
            return None
        if keyed_patch:
            patch[keyed.field] = keyed_patch
        return patch


def keyed_form(data: Any, keyed: Keyed) -> Any:
    """Return channel data with its list in keyed form (what merge patches apply to)."""
    base = base_of(data, keyed)
    if base is None:
        raise ValueError("the list has no usable ids")
    items, nulls = {}, {}
    for item_id, item in base.items.items():
        items[item_id], paths = split_nulls(_plain(item))
        if paths:
            nulls[item_id] = paths
    form = {"items": items, "order": base.ids, "nulls": nulls}
    return {**base.rest, keyed.field: form} if keyed.field else form


def list_form(data: Any, keyed: Keyed) -> Any:
    """Return keyed-form data as the channel's own shape (the inverse of ``keyed_form``)."""
    form = data[keyed.field] if keyed.field else data
    nulls = form.get("nulls") or {}
    listed = [with_nulls(form["items"][i], nulls.get(i, [])) for i in form["order"]]
    return {**data, keyed.field: listed} if keyed.field else listed


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` with ``patch`` applied (RFC 7396, section 2); ``target`` is not changed."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
