"""Writing incoming messages into the durable inbox without losing one the disk refuses.

Every message addressed to the bot is written to the inbox (agent/store.py) before any
work. By then signal-cli has acknowledged it to Signal's servers (HTTP events, socket
`on-start` mode), so a message whose write fails cannot be asked for again: the fault
campaign lost one this way with the data directory's disk full (`envelope_failed`).

`InboxWriter` holds such a message in memory instead, in arrival order, reports the data
directory as not writable (so /readyz, the `signal_rag_dependency_up{dependency="data_dir"}`
gauge and, after the grace period, the `data_dir_unwritable` alert say so; see
agent/observability/dependencies.py) and writes it as soon as the directory takes writes
again, with backoff; the coordinator then processes it as if it had just arrived. While
any message is held, later ones queue behind it, so each sender's messages keep their
order. Only storage failures are held (disk full, read-only, I/O errors, a database
locked past its timeout); any other error is the caller's, as before.

Limits: held messages live in this process only. Stopping while the disk is still full
loses them, and `drain` logs how many (`held_messages_lost`, a count, nothing else). At
most `max_held` are held; beyond that `admit` waits, so the receive loop stops reading and
signal-cli keeps the rest.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from agent.observability.dependencies import DATA_DIR, storage_error

if TYPE_CHECKING:
    from agent.observability.dependencies import DependencyMonitor
    from agent.observability.metrics import BotMetrics
    from agent.service.common import Db, Sleep
    from agent.store import InboxMessage, Store

log = logging.getLogger("agent.service")

HELD: Final = "held"
"""What `admit` returns for a message held in memory (it reaches `on_stored` later)."""
MAX_HELD = 1000
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message to write: the inbox row's key, chat and payload."""

    sender_uuid: str
    msg_timestamp: int
    chat_id: str
    payload: dict[str, Any]


def refused_write(exc: BaseException) -> str | None:
    """The reason when `exc` is the storage refusing a write for now (so the message is
    worth holding); None for any other error."""
    reason = storage_error(exc)
    if reason is None and isinstance(exc, sqlite3.OperationalError) \
            and getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY:
        reason = "locked"
    return reason


def _report_abandoned(write: asyncio.Future[Any]) -> None:
    """The outcome of a write whose admission was given up: only a failure is news (the
    message is lost with it), logged by error type alone."""
    if not write.cancelled() and write.exception() is not None:
        log.error("admission_write_lost", extra={"error": type(write.exception()).__name__})


class InboxWriter:
    """`admit` writes (and claims) a message or holds it; `drain` at shutdown."""

    def __init__(self, store: Store, db: Db, *, on_stored: Callable[[InboxMessage], None],
                 on_duplicate: Callable[[], None] = lambda: None,
                 dependencies: DependencyMonitor | None = None,
                 sleep: Sleep = asyncio.sleep, retry_initial: float = 0.5,
                 retry_cap: float = 30.0, max_held: int = MAX_HELD,
                 metrics: BotMetrics | None = None) -> None:
        self._store = store
        self._db = db
        self._on_stored = on_stored
        self._on_duplicate = on_duplicate
        self._dependencies = dependencies
        self._sleep = sleep
        self._retry_initial = retry_initial
        self._retry_cap = retry_cap
        self._max_held = max_held
        self._metrics = metrics
        self._held: deque[Incoming] = deque()
        self._room = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Messages waiting in memory for the inbox to take writes."""
        return len(self._held)

    async def admit(self, incoming: Incoming) -> InboxMessage | Literal["held"] | None:
        """The message, written and claimed; None for a redelivery of a known one; HELD
        when it waits in memory (`on_stored` gets it once written). Raises what is not a
        storage failure."""
        if not self._held:
            try:
                # Shielded: a stop that gives up on admission (the drain timeout) cancels
                # this task, and a write still queued for a database thread would then
                # never run, losing a message the daemon will not send again. The write
                # goes on; the next start answers it (`claim_pending`).
                write = asyncio.ensure_future(self._write(incoming))
                try:
                    return await asyncio.shield(write)
                except asyncio.CancelledError:
                    write.add_done_callback(_report_abandoned)
                    raise
            except (sqlite3.Error, OSError) as exc:
                if not self._refused(exc):
                    raise
        while len(self._held) >= self._max_held:
            self._room.clear()
            await self._room.wait()
        self._held.append(incoming)
        if self._metrics is not None:
            self._metrics.held.add(1, {"dependency": DATA_DIR})
        log.warning("message_held_in_memory", extra={"held": len(self._held)})
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="inbox-flush")
        return HELD

    async def drain(self) -> None:
        """At shutdown: write what is held if the inbox takes it now (the next start
        answers it); what it does not is lost with the process, and counted in the log."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        while self._held:
            try:
                await self._write(self._held[0])
            except (sqlite3.Error, OSError):
                break
            self._held.popleft()
        if self._held:
            log.error("held_messages_lost", extra={"count": len(self._held)})

    def _next(self) -> None:
        self._held.popleft()
        self._room.set()

    async def _write(self, incoming: Incoming) -> InboxMessage | None:
        return await self._db(self._store.admit, incoming.sender_uuid, incoming.msg_timestamp,
                              incoming.chat_id, incoming.payload)

    def _refused(self, exc: BaseException) -> bool:
        """True (after reporting it) when `exc` is the storage refusing the write."""
        reason = refused_write(exc)
        if reason is None:
            return False
        log.warning("inbox_write_failed", extra={"error": reason})
        if self._dependencies is not None and reason != "locked":
            self._dependencies.report(DATA_DIR, False, reason)
        return True

    async def _flush(self) -> None:
        """Write the held messages in order, each once the data directory takes writes.
        Outlives any one failure: a flusher that died would leave the receive loop waiting
        for room (when the memory is full) for ever."""
        failures = 0
        while self._held:
            try:
                written = await self._flush_first()
            except Exception as exc:  # noqa: BLE001 - see the docstring; logged, retried
                log.error("inbox_flush_failed", extra={"error": type(exc).__name__})
                written = False
            if written:
                failures = 0
                continue
            failures += 1
            await self._sleep(min(self._retry_cap, self._retry_initial * 2 ** (failures - 1)))
        log.info("held_messages_written")

    async def _flush_first(self) -> bool:
        """Write the oldest held message; False when the storage still refuses it."""
        monitor = self._dependencies
        if monitor is not None and DATA_DIR in monitor.dependencies:
            await monitor.wait_up([DATA_DIR], timeout=self._retry_cap)
        incoming = self._held[0]
        try:
            message = await self._write(incoming)
        except Exception as exc:  # noqa: BLE001 - one message must not stop the rest
            if isinstance(exc, sqlite3.Error | OSError) and self._refused(exc):
                return False
            # Not the storage: this one cannot be written at all (as `envelope_failed`
            # before); the messages behind it still can.
            log.error("held_message_failed", extra={"error": type(exc).__name__})
            self._next()
            return True
        self._next()
        if message is None:
            self._on_duplicate()
        else:
            self._on_stored(message)
        return True
