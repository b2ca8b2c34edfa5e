"""Wall-clock formatting shared by the wire protocol and the channel builders."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_utc(ts: float) -> str:
    """Format epoch seconds as ``2026-11-25T10:00:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def now_iso() -> str:
    """Return the current time as ``iso_utc`` formats it."""
    return iso_utc(time.time())
