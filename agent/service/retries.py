"""Second chances for a message (RES-2): a crashed one is claimed again after a backoff, in
this process; one that needs a dependency which is down waits, still claimed in the inbox,
until the dependency is back or `hold` seconds after its arrival (then it gets the
UNAVAILABLE reply). Nothing is lost: what waits when the service stops stays in the inbox
and is re-claimed on the next start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.observability.dependencies import DATA_DIR
from agent.service.common import Backoff, Clock, Db, ServiceStats, Sleep, count, log
from agent.store import InboxMessage

if TYPE_CHECKING:
    from agent.observability.dependencies import DependencyMonitor
    from agent.observability.metrics import BotMetrics
    from agent.store import Store

DEFAULT_HOLD = 300.0
STORAGE_HOLD = 365 * 86_400.0
"""A message waiting for the data directory waits until it takes writes (a year: no end)."""
Rerun = Callable[[InboxMessage, bool], None]
"""Process the message again; the flag: it waited for a dependency in vain."""


@dataclass(kw_only=True, eq=False, repr=False)
class Retries:
    """Schedules the second runs; `cancel` (at the drain) leaves them to the inbox."""

    store: Store
    db: Db
    stats: ServiceStats
    clock: Clock
    sleep: Sleep
    backoff: Backoff
    hold: float = DEFAULT_HOLD
    dependencies: DependencyMonitor | None = None
    """Embedding endpoint, model server, Redis, as probed (`serve` runs the probes)."""
    metrics: BotMetrics | None = None
    _waiting: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def after_crash(self, message: InboxMessage, rerun: Rerun) -> None:
        """Try a crashed message again after a backoff, in this process: waiting for the
        next start would leave its sender unanswered (and /readyz failing) until someone
        restarts the bot. After MAX_ATTEMPTS the sender gets the apology instead."""
        delay = self.backoff.delay(message.attempts)

        async def retry() -> None:
            await self.sleep(delay)
            claimed = await self.db(self.store.claim, message.key)
            if claimed is not None:  # not answered, ignored or forgotten meanwhile
                rerun(claimed, False)

        self._later(retry())

    def until_up(self, message: InboxMessage, names: list[str], rerun: Rerun) -> None:
        """Keep a message that needs a dependency which is down: it stays claimed in the
        inbox (a restart re-claims it) and runs again once the dependency is back, without
        costing one of its MAX_ATTEMPTS; after `hold` seconds from its arrival it gets the
        UNAVAILABLE reply instead. Never lost, never answered twice."""
        monitor = self.dependencies
        assert monitor is not None
        self.stats.held += 1
        count(self.metrics, "held", dependency=names[0])
        log.info("message_held", extra={"dependencies": names})
        left = self.hold - max(0.0, self.clock() - message.received_at)
        if DATA_DIR in names:
            # Not even the apology can be recorded while the data directory refuses
            # writes: wait for it however long it takes.
            left = max(left, STORAGE_HOLD)

        async def resume() -> None:
            back = left > 0 and await monitor.wait_up(names, timeout=left)
            rerun(message, not back)

        self._later(resume())

    def cancel(self) -> None:
        for task in self._waiting:
            task.cancel()

    def _later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)
