"""RFC 7396 merge patches of list channels, in the keyed form of DESIGN.md.

A merge patch replaces arrays whole, so a list of items with ids is patched as
``{"items": {id: item}, "order": [id, ...]}``: a one-ADW change becomes
``{"items": {"77c90e61": {"current_phase": "test"}}}`` instead of the whole list. ``order`` is in
a patch only when the ids or their order changed. A channel whose list sits in a field
(``adw-monitor``'s ``workflows``) has that field in keyed form and its other fields beside it.

RFC 7396 cannot say "this member is now null" (null means "remove"), nor carry a new object that
holds a null. When a change needs either, there is no patch (``None``) and the subscriber gets the
whole message: exact data always, a patch whenever one can be exact.
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


def _plain(item: Any) -> Any:
    """Return an item as plain data (items built by ``adw_index`` arrive already encoded)."""
    return orjson.loads(orjson.dumps(item)) if isinstance(item, orjson.Fragment) else item


class Patcher:
    """Make each event of one keyed channel a merge patch against the event before it."""

    __slots__ = ("_base", "_keyed", "seq")

    def __init__(self, keyed: Keyed) -> None:
        self._keyed = keyed
        self._base: Base | None = None
        self.seq = -1  # of the state the next patch starts from

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
            for item_id, _index, item in delta["set"]:
                old = old_items.get(item_id)
                items[item_id] = _whole(_plain(item)) if old is None else merge_diff(_plain(old), _plain(item))
            keyed_patch: dict[str, Any] = {"items": items} if items else {}
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
    form = {"items": {i: _plain(item) for i, item in base.items.items()}, "order": base.ids}
    return {**base.rest, keyed.field: form} if keyed.field else form


def list_form(data: Any, keyed: Keyed) -> Any:
    """Return keyed-form data as the channel's own shape (the inverse of ``keyed_form``)."""
    form = data[keyed.field] if keyed.field else data
    listed = [form["items"][i] for i in form["order"]]
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
