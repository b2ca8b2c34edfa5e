"""The version of adw-broadcaster, in a module of its own that imports nothing (every layer may read it)."""

__version__ = "0.1.0"
