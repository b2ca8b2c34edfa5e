"""The Python subscriber (``subscribe``) and ``adw-broadcaster watch``: clients, never imported by the service."""

from .stream import subscribe

__all__ = ["subscribe"]
