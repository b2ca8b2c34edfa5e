"""A URL fit to be shown: for logs, system status and errors."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """Return ``url`` without its password, query and fragment (the user name stays: it is no secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: shown without one
        port = None
    netloc = (f"{parts.username}@" if parts.username else "") + (f"{host}:{port}" if port else host)
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
