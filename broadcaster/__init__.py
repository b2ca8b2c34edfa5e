"""adw-broadcaster: live, throttled, resumable WebSocket updates of ADW agents' files and database."""

from __future__ import annotations

from ._version import __version__
from .app import create_app
from .config import Config, load_config

__all__ = ["Config", "__version__", "create_app", "load_config"]
