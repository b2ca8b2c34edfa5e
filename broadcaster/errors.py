"""Exceptions raised by the broadcaster.

    BroadcasterError            anything this package raises on purpose
     ├── ConfigError            the configuration cannot be used; the message names the file and key
     ├── StartupError           something the service needs is unusable (e.g. its event log is in use)
     │    └── ListenError       the address cannot be bound (taken, not on this machine)
     └── ProtocolError          a client asked for something the protocol does not allow
          └── InvalidAdwId      an adw_id in a path is not a plain directory name

Sources report their own read failures as data (see ``sources.adw_files.AdwRecord.error``);
they never raise into the broadcaster.
"""

from __future__ import annotations


class BroadcasterError(Exception):
    """Base class of every error the broadcaster raises on purpose."""


class ConfigError(BroadcasterError):
    """The configuration is invalid; the message is one line naming the file and key."""


class StartupError(BroadcasterError):
    """The service cannot start; the message is one line saying what to fix."""


class ListenError(StartupError):
    """The service cannot bind its address; the message says which and why."""


class ProtocolError(BroadcasterError):
    """A client request breaks the wire protocol."""


class InvalidAdwId(ProtocolError):
    """An adw_id is not letters, digits, ``_ . -`` (1-64 chars, never ``.`` or ``..``)."""
