"""What the flow knows of a channel, and the catalog that finds a channel's spec.

The specs themselves (the eight channels, their builders) live in ``broadcaster.channels``; the
core is handed a ``Catalog`` of them in ``create_app`` and never imports a channel by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .deltas import Keyed
from .snapshot import VolatilePath, digest


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What every channel of one family shares."""

    family: str
    """``workflows``, ..., or ``adw-state`` for the per-ADW channels ``adw-state:{adw_id}``."""
    type: str
    """The message ``type`` on the wire."""
    empty: Callable[[], Any]
    """The data a channel shows before its source has produced anything."""
    volatile: tuple[VolatilePath, ...] = ()
    """Clock-derived fields: left out of the digest, so time passing is not a change."""
    keyed: Keyed | None = None
    """Where the data's list of items with ids is, for channels that change an item at a time."""
    param: str | None = None
    """For families of channels ``family:{key}``: the envelope field that carries the key (``adw_id``)."""
    clock_values: bool = False
    """Its data carries clock values (uptimes, durations) recomputed whenever it is read or refreshed."""
    service: str = ""
    """The system-status entry of the source its data comes from (where a failure to publish it shows)."""
    schema: str = ""
    """The name of its data's JSON Schema in the protocol documents (``WorkflowExecutionList``)."""
    build: Callable[..., Any] | None = None
    """Makes its data from what its source read (the arguments are that source's: its feed calls it).

    May return ``(data, digest)`` when it knows the digest (an index kept up to date item by item).
    """

    @property
    def path(self) -> str:
        """Its path under ``/ws`` and under the HTTP fallback's prefixes: ``/queue``, ``/adw-state/{adw_id}``."""
        return f"/{self.family}/{{{self.param}}}" if self.param else f"/{self.family}"


class Catalog:
    """The specs of every channel family the service knows, found by channel name."""

    def __init__(self, specs: Iterable[ChannelSpec]) -> None:
        self.specs: dict[str, ChannelSpec] = {spec.family: spec for spec in specs}
        self._empty_digests: dict[str, str] = {}

    def spec_of(self, channel: str) -> ChannelSpec:
        """Return the spec of a channel name such as ``queue`` or ``adw-state:77c90e61`` (KeyError if unknown)."""
        return self.specs[channel.partition(":")[0]]

    def empty_digest(self, family: str) -> str:
        """Return the digest of a channel family's empty shape (the state before any data)."""
        known = self._empty_digests.get(family)
        if known is None:
            spec = self.specs[family]
            known = self._empty_digests[family] = digest(spec.empty(), spec.volatile)
        return known

    def envelope(self, channel: str) -> tuple[str, str] | None:
        """Return the field and value a channel's messages carry besides ``data`` (``("adw_id", id)``), if any."""
        family, _, key = channel.partition(":")
        spec = self.specs.get(family)
        return (spec.param, key) if spec is not None and spec.param and key else None
