"""What every source is to the service: a stream of reads, each of which says whether it failed.

The service follows a source under its supervisor (``broadcaster.running.follow_source``): it hands
each read to the source's feed, marks the source alive, and counts the read, as a read error when
``failed(read)`` says so. How a source is doing beyond one read (a watcher that stopped, a locked
database) is its own ``health`` object, which ``broadcaster.channels.health`` words.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from .sqlite import ReadResult, SqliteHealth

Read = TypeVar("Read")


class Source(Protocol[Read]):
    """A stream of reads: the first at once, then one per change (or per poll), until cancelled."""

    def changes(self) -> AsyncGenerator[Read, None]:
        """Yield reads forever; trouble is reported in them or in the source's health, not raised."""
        ...

    def failed(self, read: Read) -> bool:
        """Return whether ``read`` is (or holds) a failed read."""
        ...


class DatabaseWatch(Protocol):
    """A database of the agents' tables (``SqliteWatch``, ``PostgresWatch``): readers' results per change."""

    label: str  # the file, or the URL without its password: how status and the logs name it
    health: SqliteHealth

    def changes(self) -> AsyncGenerator[dict[str, ReadResult], None]:
        """Yield ``{reader name: ReadResult}`` at once, then after each change."""
        ...

    def failed(self, read: Mapping[str, ReadResult]) -> bool:
        """Return whether any reader failed in ``read``."""
        ...
