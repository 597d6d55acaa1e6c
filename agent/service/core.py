"""The Signal bot service: receive → durable inbox → answer → durable outbox → send.

Every incoming message that is addressed to the bot is accepted into the inbox before
any work (de-duplicated on sender UUID + timestamp); the reply parts and the closing of
the inbox row are one transaction; the outbox sender (`agent/service/outbox.py`) delivers
them in order and retries transient failures with backoff. After a crash, `run` first
re-claims the open inbox rows, so no message is lost and none is answered twice (SIG-2,
RES-2).

This module is the coordinator: the receive loop, per-user ordering (one asyncio lock
per user, which is FIFO; different users run in parallel), retries of crashed or held
messages (scheduled by `retries.Retries`), and the drain. Who gets an answer is decided
by `admission.Gate`, the answer comes from `responder.Responder`, periodic work is
`housekeeping.Housekeeping`.
SQLite calls run on a small dedicated thread pool (`common.Db`) so an fsync never stalls
the event loop (PERF-2).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from opentelemetry.trace import NoOpTracer, Span, SpanKind, Tracer

from agent.addressing import BotIdentity, address
from agent.feedback import FeedbackRecorder
from agent.inbox import HELD, InboxWriter, Incoming
from agent.observability.dependencies import DATA_DIR, storage_error
from agent.observability.tracing import extract, inject, mark_failed
from agent.replies import split_reply
from agent.service.admission import Admit, Gate, Respond, Silence
from agent.service.common import (
    DIRECT,
    Clock,
    Db,
    DependencyDown,
    ServiceStats,
    count,
    log,
)
from agent.service.housekeeping import Housekeeping
from agent.service.outbox import OutboxSender
from agent.service.responder import SILENCE, Reply, Responder
from agent.service.retries import Retries
from agent.signal import Envelope, EnvelopeKind, SignalTransport
from agent.store import InboxKey, InboxMessage, ReplyPart, Store, StoreCounts
from agent.users import UserDirectory

if TYPE_CHECKING:
    from agent.assistant import Assistant
    from agent.observability.metrics import BotMetrics
    from agent.observability.monitors import Monitors

MAX_ADMITTING = 32
"""Envelopes being written into the inbox at once (different senders; one sender's go one
after the other): their writes share commits (agent/store.py, group commit). Beyond this
the receive loop stops reading: over HTTP the daemon keeps the rest; over TCP or a UNIX
socket they wait, already read, in the transport's queue."""
MAX_ATTEMPTS = 3
"""Claims of one message (start-ups included) before it gets the fallback reply instead."""
GAVE_UP = "Sorry, I could not answer that message. Please try again later."
UNAVAILABLE = "The assistant is temporarily unavailable. Please try again in a few minutes."
"""The reply to a message that waited `hold` seconds for a dependency in vain (the same
text as the graph's fallback for a failing guard or model)."""


class BotService:
    """Coordinates the parts; built by `agent.wiring` (`assemble_service`, `build_service`)."""

    def __init__(self, *, transport: SignalTransport, assistant: Assistant, store: Store,
                 users: UserDirectory, bot: BotIdentity, gate: Gate, responder: Responder,
                 sender: OutboxSender, housekeeping: Housekeeping, retries: Retries, db: Db,
                 stats: ServiceStats, clock: Clock, drain_timeout: float = 20.0,
                 metrics: BotMetrics | None = None, tracer: Tracer | None = None,
                 monitors: Monitors | None = None,
                 feedback: FeedbackRecorder | None = None) -> None:
        self.transport = transport
        self.assistant = assistant
        self.store = store
        self.users = users
        self.bot = bot
        self.gate = gate
        self.responder = responder
        self.sender = sender
        self.housekeeping = housekeeping
        self.retries = retries
        self.stats = stats
        self.monitors = monitors
        """Alert manager and monitors (OBS-6), run by `serve`; a crash counts as an error."""
        self.dependencies = retries.dependencies
        """Embedding endpoint, model server, Redis: probed; a message that needs one that
        is down waits for it in the inbox (`retries.Retries.until_up`)."""
        self.metrics = metrics
        self._db = db
        self._clock = clock
        self._drain_timeout = drain_timeout
        self._tracer = tracer or NoOpTracer()
        self.feedback = feedback or FeedbackRecorder(users, keep_text=False, metrics=metrics,
                                                     tracer=self._tracer)
        """Reactions on answers (EV-4): counted, stored, linked to the answer's trace."""
        self._user_locks: dict[str, asyncio.Lock] = {}
        self._unwritten: dict[InboxKey, Reply] = {}
        """Replies made but refused by the data directory, kept for the message's next run:
        the write is what failed, so only the write is tried again. Running the graph again
        would call the model (and record the exchange) once per probe cycle while the disk
        stays full, however long that is."""
        self._in_flight: set[asyncio.Task[None]] = set()
        self._admitting: set[asyncio.Task[None]] = set()
        """Envelopes being handled (written into the inbox) by the receive loop."""
        self._sender_queues: dict[str | None, tuple[asyncio.Lock, list[int]]] = {}
        """Per sender: the lock its envelopes take in arrival order, and how many hold or
        wait for it (the entry goes when none does)."""
        self.inbox = InboxWriter(store, db, on_stored=self._admitted,
                                 on_duplicate=self._duplicate,
                                 dependencies=self.dependencies, metrics=metrics)
        """Writes each message into the inbox, or holds it in memory while the data
        directory refuses writes (disk full), so none is lost."""

    # ----------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain: stop receiving, finish work in flight
        (what does not finish stays in the inbox for the next start), flush the outbox."""
        self._db.open()
        try:
            await self._serve(stop)
        finally:
            self._db.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        for message in await self._db(self.store.claim_pending):
            self._spawn(self._process(message))
        sender = asyncio.create_task(self.sender.run(), name="signal-sender")
        periodic = self.housekeeping.tasks()
        receiver = asyncio.create_task(self._receive_loop(), name="signal-receiver")
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({receiver, stopped}, return_when=asyncio.FIRST_COMPLETED)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        stopped.cancel()
        if self._admitting:  # envelopes already read: into the inbox (or held) first
            _, admitting = await asyncio.wait(self._admitting, timeout=self._drain_timeout)
            # Still waiting: for room among held messages (disk full), which loses them,
            # or for a database thread, whose write is shielded and still lands.
            if admitting:
                log.error("admission_abandoned", extra={"count": len(admitting)})
            for task in admitting:
                task.cancel()
        await self.inbox.drain()  # held messages: into the inbox if it takes them now
        self.retries.cancel()  # waiting retries stay in the inbox for the next start
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=self._drain_timeout)
            for task in pending:  # the inbox keeps these; they are re-claimed on start
                task.cancel()
        for task in periodic:
            task.cancel()
        self.sender.drain()  # the sender flushes what is due, then returns
        try:
            await asyncio.wait_for(sender, timeout=self._drain_timeout)
        except TimeoutError:
            log.warning("outbox_drain_timeout")
        self.responder.cancel_courtesy()

    async def counts(self) -> StoreCounts:
        """Inbox and outbox row counts (for readiness)."""
        return await self._db(self.store.counts)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _rerun(self, message: InboxMessage, unavailable: bool) -> None:
        self._spawn(self._process(message, unavailable=unavailable))

    # ----------------------------------------------------------------- receiving

    async def _receive_loop(self) -> None:
        """Each envelope is handled in a task of its own, so the inbox writes of different
        senders share commits; one sender's envelopes are handled one after the other, in
        arrival order (so their messages are stored, answered and replied to in order)."""
        slots = asyncio.Semaphore(MAX_ADMITTING)
        async for envelope in self.transport.events():
            try:
                await slots.acquire()
            except asyncio.CancelledError:
                # Stopping while every slot is taken: this envelope is already read (the
                # daemon will not send it again), so it joins the others being admitted,
                # which the stop waits for, instead of being dropped.
                self._admit(envelope, slots, holds_slot=False)
                raise
            self._admit(envelope, slots, holds_slot=True)

    def _admit(self, envelope: Envelope, slots: asyncio.Semaphore, *, holds_slot: bool) -> None:
        task = asyncio.create_task(self._handle_in_order(envelope, slots, holds_slot))
        self._admitting.add(task)
        task.add_done_callback(self._admitting.discard)

    async def _handle_in_order(self, envelope: Envelope, slots: asyncio.Semaphore,
                               holds_slot: bool = True) -> None:
        sender = envelope.source_uuid
        lock, users = self._sender_queues.setdefault(sender, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:  # asyncio's lock is FIFO: arrival order
                await self.handle(envelope)
        except Exception as exc:  # noqa: BLE001 - one bad message never stops the bot
            log.error("envelope_failed", extra={"error": type(exc).__name__,
                                                "kind": envelope.kind.value})
        finally:
            users[0] -= 1
            if not users[0]:
                del self._sender_queues[sender]
            if holds_slot:
                slots.release()

    async def handle(self, envelope: Envelope) -> None:
        """Persist what needs an answer and schedule it; record feedback; ignore the rest."""
        uuid = envelope.source_uuid
        if uuid is None or self._is_self(uuid, envelope.source_number):
            return
        if envelope.kind is EnvelopeKind.REACTION and envelope.reaction is not None:
            await self._reaction(uuid, envelope)
            return
        if envelope.kind is not EnvelopeKind.DATA or not envelope.text:
            # Edits, deletes, receipts, typing, sync, stories and calls need no answer:
            # an edited question is not re-answered (the original already was).
            return
        addressing = address(envelope, self.bot, command_prefix=self.gate.command_prefix)
        if not addressing.addressed:
            return  # group chatter: never stored, never answered
        self.stats.received += 1
        with self._tracer.start_as_current_span(
                "signal receive", kind=SpanKind.CONSUMER, record_exception=False,
                attributes={"messaging.system": "signal",
                            "signal_rag.chat": "group" if envelope.group_id else "dm",
                            "signal_rag.user": self.assistant.hash_user(uuid)[:16]}):
            payload = {"text": addressing.text, "group_id": envelope.group_id,
                       "number": envelope.source_number,
                       "expires": envelope.expires_in_seconds, "trace": inject()}
            message = await self.inbox.admit(Incoming(uuid, envelope.timestamp,
                                                      envelope.group_id or DIRECT, payload))
        if message is None:
            self._duplicate()
        elif message != HELD:  # a held message comes back through `_admitted`
            self._admitted(message)

    def _admitted(self, message: InboxMessage) -> None:
        """A message is in the inbox: answer it."""
        if self.metrics is not None:
            self.metrics.received.add(1, {"chat": "dm" if message.chat_id == DIRECT
                                          else "group"})
        self._spawn(self._process(message))

    def _duplicate(self) -> None:
        self.stats.duplicates += 1

    async def _reaction(self, uuid: str, envelope: Envelope) -> None:
        """A reaction to one of the bot's answers is feedback on it; others are ignored."""
        reaction = envelope.reaction
        assert reaction is not None
        if self._is_self(reaction.target_author_uuid, reaction.target_author_number):
            await self._db(self.feedback.record, self.assistant.hash_user(uuid), reaction)

    def _is_self(self, uuid: str | None, number: str | None) -> bool:
        return bool((uuid and uuid == self.bot.uuid) or (number and number == self.bot.number))

    # ----------------------------------------------------------------- answering

    async def _process(self, message: InboxMessage, *, unavailable: bool = False) -> None:
        """Handle one message inside its trace (continued from the inbox after a restart).
        `unavailable`: it waited for a dependency in vain; it gets UNAVAILABLE."""
        payload = message.payload or {}
        with self._tracer.start_as_current_span(
                "bot handle", context=extract(payload.get("trace")), record_exception=False,
                attributes={"signal_rag.attempt": message.attempts}) as span:
            lock = self._user_locks.setdefault(message.key.sender_uuid, asyncio.Lock())
            async with lock:
                await self._process_in_order(message, span, unavailable=unavailable)

    async def _process_in_order(self, message: InboxMessage, span: Span, *,
                                unavailable: bool) -> None:
        try:
            if self.dependencies is not None and self.dependencies.down([DATA_DIR]):
                raise DependencyDown([DATA_DIR])  # nothing it does could be written
            # A reply made earlier whose write the data directory refused goes first. A
            # message that crashed the bot on every earlier attempt must not do it
            # forever: it gets a short apology instead (RES-2).
            kept = self._unwritten.pop(message.key, None)
            reply = kept or (
                Reply(GAVE_UP) if message.attempts > MAX_ATTEMPTS else
                Reply(UNAVAILABLE) if unavailable else await self._reply(message))
        except DependencyDown as down:
            span.set_attribute("signal_rag.route", "held")
            self.retries.until_up(message, down.names, self._rerun)
            return
        except Exception as exc:  # noqa: BLE001 - the message stays open for a retry
            if self._held_for_storage(message, exc, span):
                return
            log.error("message_failed", extra={"error": type(exc).__name__})
            count(self.metrics, "failed", stage="graph")
            if self.monitors is not None:  # a crash never reaches the audit trail
                self.monitors.errors.observe(ok=False)
            mark_failed(span, exc)
            self.retries.after_crash(message, self._rerun)
            return
        text = reply.text
        if text is not None and not text.strip():  # never an empty send (the graph
            log.error("empty_reply_replaced")       # guards this too)
            text = GAVE_UP
        if text == GAVE_UP:
            count(self.metrics, "failed", stage="gave_up")
        elif unavailable and kept is None:
            count(self.metrics, "failed", stage="dependency_down")
        span.set_attribute("signal_rag.route", reply.route)
        try:
            if text is None:
                await self._db(self.store.mark_ignored, message.key)
                self.stats.ignored += 1
                return
            await self._enqueue(message, text, reply, span)
        except Exception as exc:
            if not self._held_for_storage(message, exc, span):
                raise
            self._unwritten[message.key] = reply

    def _held_for_storage(self, message: InboxMessage, exc: BaseException,
                          span: Span) -> bool:
        """A write the data directory refused (disk full, I/O error) is not the message's
        fault: it waits, claimed in the inbox, until the directory takes writes again,
        without spending one of its attempts. True when `exc` was such a write."""
        reason = storage_error(exc)
        monitor = self.dependencies
        if reason is None or monitor is None or DATA_DIR not in monitor.dependencies:
            return False
        log.warning("message_write_failed", extra={"error": reason})
        monitor.report(DATA_DIR, False, reason)
        span.set_attribute("signal_rag.route", "held")
        self.retries.until_up(message, [DATA_DIR], self._rerun)
        return True

    async def _reply(self, message: InboxMessage) -> Reply:
        """Admission first; only an admitted question reaches the graph."""
        decision = await self.gate.decide(message)
        if isinstance(decision, Silence):
            return Reply(None, route=SILENCE)
        if isinstance(decision, Respond):
            return Reply(decision.text)
        assert isinstance(decision, Admit)
        return await self.responder.answer(message, decision)

    async def _enqueue(self, message: InboxMessage, text: str, reply: Reply,
                       span: Span) -> None:
        """The reply's parts and the closing of the inbox row, in one transaction."""
        uuid = message.key.sender_uuid
        group = (message.payload or {}).get("group_id")
        trace = inject()
        parts = [ReplyPart(text=part, recipient=None if group else uuid, group_id=group,
                           quote_author=uuid if group else None,
                           quote_timestamp=message.key.msg_timestamp if group else None,
                           trace=trace)
                 for part in split_reply(text)]
        span.set_attribute("signal_rag.reply_parts", len(parts))
        self.sender.expect(message.key, reply.citations, reply.feedback)
        if await self._db(self.store.record_reply, message.key, parts):
            self.stats.answered += 1
            self.sender.wake()
            if self.metrics is not None:
                self.metrics.reply_latency.record(
                    max(0.0, self._clock() - message.received_at))
