"""Delivers the durable outbox in order and retries transient failures with backoff (SIG-2).

Replies to different chats are sent concurrently (PERF-2); one chat's parts stay in order,
stopping at the first part that must wait, so a later reply never overtakes an earlier one.
Signal's own rate limit and an untrusted identity wait long and alert operators; an
unregistered recipient or invalid parameters fail the part for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import NoOpTracer, Span, SpanKind, Tracer

from agent.feedback import remember_answer
from agent.observability.alerts import SIGNAL_RATE_LIMITED, SIGNAL_UNTRUSTED_IDENTITY
from agent.observability.tracing import extract, mark_failed
from agent.service.common import DIRECT, Alerting, Backoff, Clock, Db, ServiceStats, count
from agent.signal import (
    SignalError,
    SignalInvalidParams,
    SignalRateLimited,
    SignalUnregistered,
    SignalUntrustedIdentity,
)

if TYPE_CHECKING:
    from agent.feedback import AnswerRecord
    from agent.observability.metrics import BotMetrics
    from agent.signal import SignalTransport
    from agent.store import InboxKey, OutboxItem, Store
    from agent.users import UserDirectory

log = logging.getLogger("agent.service")


@dataclass(kw_only=True, eq=False, repr=False)
class OutboxSender:
    """The sender loop: `run` until `drain` is called, then flush what is due and return."""

    transport: SignalTransport
    store: Store
    users: UserDirectory
    db: Db
    hash_user: Callable[[str], str]
    alerting: Alerting
    stats: ServiceStats
    clock: Clock
    backoff: Backoff
    send_concurrency: int = 16
    metrics: BotMetrics | None = None
    tracer: Tracer | None = None
    _sources: dict[InboxKey, list[dict[str, Any]]] = field(default_factory=dict, init=False)
    _records: dict[InboxKey, AnswerRecord] = field(default_factory=dict, init=False)
    """Citations of replies recorded but not sent yet: remembered with the first part's
    sent timestamp, which /sources and reactions refer to. In memory only (as before the
    split): a reply sent after a restart is remembered without them."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _drained: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self._tracer: Tracer = self.tracer or NoOpTracer()
        self._slots = asyncio.Semaphore(self.send_concurrency)

    def expect(self, key: InboxKey, citations: list[dict[str, Any]],
               record: AnswerRecord | None = None) -> None:
        """Keep the citations (and feedback record, EV-4) of the reply to `key` before it
        enters the outbox (the first part may leave before the caller hears that it was
        recorded)."""
        self._sources[key] = citations
        if record is not None:
            self._records[key] = record

    def wake(self) -> None:
        """New parts are due: look at the outbox now rather than at the next tick."""
        self._wake.set()

    def drain(self) -> None:
        """Send what is due, then let `run` return (the rest stays in the outbox)."""
        self._drained.set()
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                due = await self.db(self.store.due_outbox, self.clock())
                if due:
                    await self._send_due(due)
                    continue  # sending a part makes the next part of that reply due
                if self._drained.is_set():
                    return  # drained what was due; the rest stays in the outbox
                self._wake.clear()
                next_at = await self.db(self.store.next_due_at)
            except (sqlite3.Error, OSError) as exc:
                # The outbox cannot be read or written now (disk full): what was not
                # sent stays pending; the loop must not die with it.
                log.error("outbox_round_failed", extra={"error": type(exc).__name__})
                next_at = None
            wait = 1.0 if next_at is None else min(1.0, max(0.0, next_at - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _send_due(self, due: list[OutboxItem]) -> None:
        """Different chats in parallel; within one chat, in order, stopping at the first
        part that must wait, so a later reply never overtakes an earlier one."""
        chats: dict[tuple[str | None, str | None], list[OutboxItem]] = {}
        for item in due:
            chats.setdefault((item.recipient, item.group_id), []).append(item)

        async def send_chat(items: list[OutboxItem]) -> None:
            async with self._slots:
                for item in items:
                    if not await self._send_one(item):
                        return

        # Every chat finishes before the round ends, even when one raises (disk full):
        # a round ended early would let the next one send again the parts the other
        # chats are still sending or still marking as sent, a duplicate.
        results = await asyncio.gather(*(send_chat(items) for items in chats.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _send_one(self, item: OutboxItem) -> bool:
        """Send one part; True when it left (or can never leave), False when it waits."""
        with self._tracer.start_as_current_span(
                "signal send", context=extract(item.trace), kind=SpanKind.PRODUCER,
                record_exception=False,
                attributes={"messaging.system": "signal", "signal_rag.part": item.part,
                            "signal_rag.send_attempt": item.attempts + 1}) as span:
            sent = await self._send_part(item, span)
            span.set_attribute("signal_rag.sent", sent)
            return sent

    async def _send_part(self, item: OutboxItem, span: Span) -> bool:
        recipients = [item.recipient] if item.recipient else []
        try:
            result = await self.transport.send(
                item.text, recipients=recipients, group_id=item.group_id,
                quote_timestamp=item.quote_timestamp, quote_author=item.quote_author)
        except SignalError as exc:
            mark_failed(span, exc)
            return await self._send_failed(item, exc)
        await self._mark_sent(item, result.timestamp or 0)
        self.stats.sent += 1
        if item.part == 0 and result.timestamp:
            user = self.hash_user(item.key.sender_uuid)
            try:
                await self.db(remember_answer, self.users, user, item.group_id or DIRECT,
                               result.timestamp, sources=self._sources.pop(item.key, []),
                               record=self._records.pop(item.key, None), trace=item.trace)
            except (sqlite3.Error, OSError) as exc:  # /sources and reactions miss this
                log.error("remember_answer_failed", extra={"error": type(exc).__name__})
        return True

    async def _mark_sent(self, item: OutboxItem, timestamp: int) -> None:
        """Record that a part left, however long the disk takes to accept it: a part left
        pending would be sent again, a duplicate (found by the fault campaign, disk full).
        This chat's later parts wait meanwhile."""
        failures = 0
        while True:
            try:
                await self.db(self.store.mark_sent, item.id, timestamp)
                return
            except (sqlite3.Error, OSError) as exc:
                failures += 1
                log.error("mark_sent_failed", extra={"error": type(exc).__name__,
                                                     "attempt": failures})
                await asyncio.sleep(min(30.0, 0.5 * 2 ** (failures - 1)))

    async def _send_failed(self, item: OutboxItem, exc: SignalError) -> bool:
        """Decide a failed part's fate; True when it will never be sent (permanent)."""
        if isinstance(exc, SignalRateLimited):
            # Signal's own limit (or a CAPTCHA): retrying soon makes it worse.
            await self._retry(item, max(exc.retry_after or 0, 600), exc,
                              alert=SIGNAL_RATE_LIMITED)
            return False
        if isinstance(exc, SignalUntrustedIdentity):
            await self._retry(item, 3600, exc, alert=SIGNAL_UNTRUSTED_IDENTITY)
            return False
        if isinstance(exc, SignalUnregistered | SignalInvalidParams):
            await self.db(self.store.mark_failed, item.id, type(exc).__name__)
            self.stats.send_failed += 1
            count(self.metrics, "failed", stage="send")
            return True
        # network trouble and anything unexpected
        await self._retry(item, self.backoff.delay(item.attempts), exc)
        return False

    async def _retry(self, item: OutboxItem, delay: float, exc: Exception,
                     alert: str | None = None) -> None:
        await self.db(self.store.mark_retry, item.id, self.clock() + delay,
                       type(exc).__name__)
        self.stats.send_retries += 1
        if alert:
            self.alerting.raise_(alert)
