"""What the service's parts share: the SQLite thread pool, stats, alerts, counters, backoff.

Each part (admission, responder, outbox sender, housekeeping) takes only the pieces of
this module it uses; the coordinator (`agent/service/core.py`) owns their lifetime.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from agent.signal import SignalError

if TYPE_CHECKING:
    from agent.observability.alerts import AlertManager
    from agent.observability.metrics import BotMetrics

log = logging.getLogger("agent.service")
P = ParamSpec("P")
T = TypeVar("T")

DIRECT = "dm"
"""The chat id of a direct conversation (a group's is its group id)."""

Alert = Callable[[str], None]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def log_alert(kind: str) -> None:
    """The alert callback without an alert manager: an error line operators can grep."""
    log.error("operator_alert", extra={"alert": kind})


class DependencyDown(Exception):  # noqa: N818 - a state, not a failure of ours
    """Answering needs a dependency that is down: the message waits in the inbox."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


@dataclass(slots=True)
class ServiceStats:
    received: int = 0
    duplicates: int = 0
    answered: int = 0
    ignored: int = 0
    sent: int = 0
    send_retries: int = 0
    send_failed: int = 0
    held: int = 0
    """Messages that waited in the inbox for a dependency to come back."""
    alerts: list[str] = field(default_factory=list)


class Alerting:
    """Raise and resolve operator alerts: to the alert manager when `serve` has one (OBS-6),
    else to `alert`; every raised kind is also kept in `stats.alerts`."""

    def __init__(self, stats: ServiceStats, alert: Alert = log_alert,
                 manager: AlertManager | None = None) -> None:
        self._stats = stats
        self._alert: Alert = manager if manager is not None else alert
        self._manager = manager

    def raise_(self, kind: str) -> None:
        self._stats.alerts.append(kind)
        self._alert(kind)

    def resolve(self, kind: str) -> None:
        if self._manager is not None:
            self._manager.resolve(kind)


def count(metrics: BotMetrics | None, counter: str, **attributes: str) -> None:
    """Add one to a counter of `metrics` (nothing without metrics)."""
    if metrics is not None:
        getattr(metrics, counter).add(1, attributes)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff of retries (a crashed message, a failed send)."""

    initial: float = 2.0
    cap: float = 300.0

    def delay(self, attempts: int) -> float:
        return min(self.cap, self.initial * 2.0 ** attempts)


DB_THREADS = 8
"""Threads of the SQLite pool: enough for a commit's worth of writes to gather behind it."""


class Db:
    """Runs blocking SQLite calls off the event loop (each commit waits for an fsync) on a
    small dedicated pool while the service runs, so an fsync never stalls the loop."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        # Several workers: inbox writes made while one commits wait in their own threads
        # and go together in the next commit (agent/store.py, group commit), and the user
        # directory (another file) does not wait behind them.
        self._pool = ThreadPoolExecutor(max_workers=DB_THREADS,
                                        thread_name_prefix="signal-rag-db")

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    async def __call__(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._pool is None:  # outside `run` (tests, one-off maintenance calls)
            return await asyncio.to_thread(call, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))


async def best_effort(call: Awaitable[Any] | None) -> bool:
    """Receipts and typing indicators are courtesy: their failure costs nothing.
    True when the call went through."""
    if call is None:
        return False
    try:
        await call
    except SignalError as exc:
        log.info("courtesy_call_failed", extra={"error": type(exc).__name__})
        return False
    return True
