"""Supervision: a long-running part that crashes is restarted, and its failure is visible.

A monitor that silently stops is the worst failure this service can have. Every long-running
part (each source's feed, the pipeline, the event-log writer, each poller, the client sweep) runs
under ``Supervisor.run``. When it raises, the traceback is logged (once per distinct error; a
repeat is one line), the part is marked with the reason, which system status shows as ``error``
for the part's service, and the part starts again after a capped exponential backoff. It counts
as recovered once it reports progress (``ok``) or has run ``stable_after`` seconds without failing.

Cancellation is never swallowed: cancelling ``run`` stops the part for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sources.backoff import Backoff

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Part:
    """One supervised part and how it is doing."""

    name: str
    service: str
    """The system-status entry its failures show under (``adw_files``, ``database``, ...)."""
    restarts: int = 0
    streak: int = 0
    """Crashes since it last ran well; drives the backoff."""
    problem: str | None = None
    """Why it is down, while it is; None when it runs well."""
    last_error: str | None = None


class Supervisor:
    """Run parts until cancelled, restarting each on a crash; report the ones that are down."""

    def __init__(
        self,
        *,
        on_change: Callable[[Part], None] | None = None,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        stable_after: float = 10.0,
    ) -> None:
        self.on_change = on_change
        self.restarts = Backoff(initial_delay, max_delay)
        self.stable_after = stable_after
        self.parts: dict[str, Part] = {}

    def backoff(self, streak: int) -> float:
        """Return the delay before restart number ``streak`` of a streak (1, 2, ...): doubling, capped."""
        return self.restarts.delay(streak)

    def problems(self) -> dict[str, list[str]]:
        """Return, per service, the problems of its parts that are down."""
        out: dict[str, list[str]] = {}
        for part in self.parts.values():
            if part.problem is not None:
                out.setdefault(part.service, []).append(part.problem)
        return out

    def ok(self, name: str) -> None:
        """Record that part ``name`` made progress: it is up again if it was down."""
        part = self.parts.get(name)
        if part is None or (part.problem is None and part.streak == 0):
            return
        part.streak = 0
        if part.problem is not None:
            part.problem = None
            logger.info("%s is running again", name)
            self._changed(part)

    async def run(self, name: str, service: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` as part ``name`` of ``service`` until cancelled, restarting it whenever it ends.

        Args:
            name: the part's name in logs and status messages ("adw files", "pipeline").
            service: the system-status entry its failures show under.
            work: starts the part; it is meant to run until cancelled.
        """
        part = self.parts.setdefault(name, Part(name, service))
        loop = asyncio.get_running_loop()
        while True:
            stable = loop.call_later(self.stable_after, self.ok, name)
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error: BaseException | None = exc
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                error, reason = None, "stopped on its own"
            finally:
                stable.cancel()
            part.restarts += 1
            part.streak += 1
            delay = self.backoff(part.streak)
            if reason != part.last_error:
                logger.error("%s crashed (%s); restarting in %gs", name, reason, delay, exc_info=error)
            else:
                logger.warning("%s crashed again (%s); restarting in %gs", name, reason, delay)
            part.last_error = reason
            part.problem = f"{name} crashed ({reason[:300]}); restart {part.restarts} in {delay:g}s"
            self._changed(part)
            await asyncio.sleep(delay)

    def _changed(self, part: Part) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(part)
        except Exception:  # reporting must never take the supervisor down with it
            logger.exception("reporting the state of %s failed", part.name)
