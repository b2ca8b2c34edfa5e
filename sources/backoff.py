"""How long every retry loop waits: capped exponential delays, with full jitter where many retry at once.

One policy for the supervisor's restarts, the event log's failed writes, the Python
subscriber's reconnects, the bus's and PostgreSQL's reconnects (here, in the lowest layer, so that
sources use it too); each loop holds a ``Backoff`` with its own
numbers. Random and sleep are injected, so tests neither wait nor guess.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay ``first`` seconds before attempt 1, doubling per attempt up to ``cap``.

    With ``jitter`` the delay is drawn uniformly below that (full jitter: clients that lost the
    same server do not come back in step).
    """

    first: float
    cap: float
    jitter: bool = False
    random: Callable[[], float] = field(default=_random.random, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def delay(self, attempt: int) -> float:
        """Return the delay before retry ``attempt`` (1, 2, ...; lower counts as 1)."""
        # The exponent stops growing long after the cap is reached: 2.0 ** 1024 overflows, and a
        # database down for hours counts thousands of attempts.
        base = min(self.cap, self.first * 2.0 ** min(max(0, attempt - 1), 64))
        return self.random() * base if self.jitter else base

    async def pause(self, attempt: int) -> float:
        """Wait the delay before retry ``attempt``; return it."""
        delay = self.delay(attempt)
        await self.sleep(delay)
        return delay
