"""What every source is to the service: a stream of reads, each of which says whether it failed.

The service follows a source under its supervisor (``broadcaster.app.follow_source``): it hands
each read to the source's feed, marks the source alive, and counts the read, as a read error when
``failed(read)`` says so. How a source is doing beyond one read (a watcher that stopped, a locked
database) is its own ``health`` object, which ``broadcaster.channels.health`` words.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol, TypeVar

Read = TypeVar("Read")


class Source(Protocol[Read]):
    """A stream of reads: the first at once, then one per change (or per poll), until cancelled."""

    def changes(self) -> AsyncGenerator[Read, None]:
        """Yield reads forever; trouble is reported in them or in the source's health, not raised."""
        ...

    def failed(self, read: Read) -> bool:
        """Return whether ``read`` is (or holds) a failed read."""
        ...
