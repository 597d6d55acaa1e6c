"""The Signal bot service: receive → durable inbox → answer → durable outbox → send.

Every incoming message that is addressed to the bot is accepted into the inbox before
any work (de-duplicated on sender UUID + timestamp); the reply parts and the closing of
the inbox row are one transaction; a separate sender loop delivers the outbox in order
and retries transient failures with backoff. After a crash, `run` first re-claims the
open inbox rows, so no message is lost and none is answered twice (SIG-2, RES-2).

Messages of one user are handled in arrival order (one asyncio lock per user, which is
FIFO); different users run in parallel. The graph returns the reply; this module owns
who gets an answer at all (allow list, activation, commands, rate limits) and delivery.

Throughput (PERF-2): SQLite calls run on a small dedicated thread pool so an fsync never
stalls the event loop; replies to different chats are sent concurrently (one chat's parts
stay in order); the typing indicator is only sent when an answer takes longer than
`typing_delay` (an instant answer needs none), and is not switched off before a reply,
because Signal clients clear it when the sender's next message arrives.

Disappearing messages (SIG-7): signal-cli stores the timer of each incoming message for
its chat and applies it to every message it sends there (checked in its source,
`IncomingMessageHandler` and `SendHelper`), so replies carry the same timer. This
service purges that chat's stored conversation (memory, last sources) on the same timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry.trace import NoOpTracer, Span, SpanKind, Tracer
from pydantic import SecretStr

from agent.addressing import BotIdentity, address
from agent.anomaly_rules import MessageFacts
from agent.assistant import Assistant, load_knowledge
from agent.commands import (
    Command,
    ParsedCommand,
    help_text,
    info_text,
    matches_passphrase,
    parse_command,
    requires_admin,
    unknown_command_hint,
)
from agent.observability.alerts import (
    INDEX_CORRUPT,
    INDEX_RESTORED,
    LIMITS_STORAGE_UNREACHABLE,
    SIGNAL_RATE_LIMITED,
    SIGNAL_UNTRUSTED_IDENTITY,
)
from agent.observability.dependencies import EMBEDDINGS, LIMITS_STORAGE
from agent.observability.tracing import extract, inject, mark_failed
from agent.ratelimit import ActivationLockout, UserRateLimiter
from agent.replies import split_reply
from agent.signal import (
    Envelope,
    EnvelopeKind,
    SignalError,
    SignalInvalidParams,
    SignalRateLimited,
    SignalTransport,
    SignalUnregistered,
    SignalUntrustedIdentity,
)
from agent.store import InboxKey, InboxMessage, OutboxItem, ReplyPart, Store, StoreCounts
from agent.users import Thread, UserDirectory
from graph.contract import BLOCKED_REASONS, route_of
from knowledge.index import KnowledgeIndexError, verify_index

if TYPE_CHECKING:
    from agent.anomaly_rules import AnomalyDetector
    from agent.observability.anomalies import AnomalyRecorder
    from agent.observability.dependencies import DependencyMonitor
    from agent.observability.metrics import BotMetrics
    from agent.observability.monitors import Monitors

log = logging.getLogger(__name__)
IndexFingerprint = tuple[tuple[str, int, int], ...] | None
P = ParamSpec("P")
T = TypeVar("T")

ACTIVATED = "Welcome! You can now ask me questions about the documents. Send /help for more."
FORGOTTEN = ("Done: everything stored about you was deleted. "
             "Send the passphrase again to start over.")
RESET = "Conversation cleared."
NOT_ADMIN = "That command is for administrators only."
SLOW_DOWN = "You are sending messages too fast. Please try again in {seconds} s."
DIRECT = "dm"
MAX_ATTEMPTS = 3
"""Claims of one message (start-ups included) before it gets the fallback reply instead."""
GAVE_UP = "Sorry, I could not answer that message. Please try again later."
UNAVAILABLE = "The assistant is temporarily unavailable. Please try again in a few minutes."
"""The reply to a message that waited `hold` seconds for a dependency in vain (the same
text as the graph's fallback for a failing guard or model)."""
DEFAULT_HOLD = 300.0


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who may talk to the bot (ACC-1, ACC-2)."""

    passphrase: SecretStr | None = None
    """None: no activation step (only sensible together with an allow list). Kept wrapped,
    so no repr, log line or traceback shows it; unwrapped only inside the comparison."""
    allowed: frozenset[str] = frozenset()
    """Service UUIDs or E.164 numbers; empty means everyone (after activation)."""
    admins: frozenset[str] = frozenset()
    command_prefix: str = "/"

    def __post_init__(self) -> None:
        if isinstance(self.passphrase, str):  # callers (tests) may hand a plain string
            object.__setattr__(self, "passphrase", SecretStr(self.passphrase))


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


Alert = Callable[[str], None]


def _log_alert(kind: str) -> None:
    log.error("operator_alert", extra={"alert": kind})


class BotService:
    def __init__(self, *, transport: SignalTransport, assistant: Assistant, store: Store,
                 users: UserDirectory, limiter: UserRateLimiter, lockout: ActivationLockout,
                 bot: BotIdentity, access: AccessPolicy, alert: Alert = _log_alert,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 retry_initial: float = 2.0, retry_cap: float = 300.0,
                 drain_timeout: float = 20.0, expiry_interval: float = 60.0,
                 queue_retention: float = 7 * 24 * 3600.0,
                 typing_delay: float = 0.5, send_concurrency: int = 16,
                 metrics: BotMetrics | None = None, snapshot_interval: float = 5.0,
                 index_check_interval: float = 5.0, index_verify_interval: float = 60.0,
                 tracer: Tracer | None = None, monitors: Monitors | None = None,
                 anomalies: AnomalyDetector | None = None,
                 anomaly_recorder: AnomalyRecorder | None = None,
                 dependencies: DependencyMonitor | None = None,
                 hold: float = DEFAULT_HOLD) -> None:
        self.transport = transport
        self.assistant = assistant
        self.store = store
        self.users = users
        self.limiter = limiter
        self.lockout = lockout
        self.bot = bot
        self.access = access
        self.stats = ServiceStats()
        self.monitors = monitors
        """Alert manager and monitors (OBS-6); `alert` goes to its manager when set."""
        self._alert: Alert = monitors.manager if monitors is not None else alert
        self.anomalies = anomalies
        self._anomaly_recorder = anomaly_recorder
        self.dependencies = dependencies
        """Embedding endpoint, model server, Redis: probed; a message that needs one that
        is down waits up to `hold` seconds in the inbox, then gets UNAVAILABLE."""
        self._hold = hold
        self._clock = clock
        self._sleep = sleep
        self._retry_initial = retry_initial
        self._retry_cap = retry_cap
        self._drain_timeout = drain_timeout
        self._expiry_interval = expiry_interval
        self._queue_retention = queue_retention
        self._queue_purged_at: float | None = None
        self._typing_delay = typing_delay
        self.metrics = metrics
        self._tracer = tracer or NoOpTracer()
        self._snapshot_interval = snapshot_interval
        self._index_check_interval = index_check_interval
        self._index_verify_interval = index_verify_interval
        self._index_fingerprint: IndexFingerprint = None
        self._index_verified_at = clock()
        self._send_slots = asyncio.Semaphore(send_concurrency)
        self._db_pool: ThreadPoolExecutor | None = None
        self._courtesy: set[asyncio.Task[Any]] = set()
        self._user_locks: dict[str, asyncio.Lock] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._retries: set[asyncio.Task[None]] = set()
        self._citations: dict[InboxKey, list[dict[str, Any]]] = {}
        self._routes: dict[InboxKey, str] = {}
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain: stop receiving, finish work in flight
        (what does not finish stays in the inbox for the next start), flush the outbox."""
        # Two workers: the inbox store and the user directory are separate files.
        self._db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="signal-rag-db")
        try:
            await self._serve(stop)
        finally:
            pool, self._db_pool = self._db_pool, None
            pool.shutdown(wait=True)

    async def _serve(self, stop: asyncio.Event) -> None:
        for message in await self._db(self.store.claim_pending):
            self._spawn(self._process(message))
        sender = asyncio.create_task(self._send_loop(), name="signal-sender")
        expiry = asyncio.create_task(self._expire_loop(), name="memory-expiry")
        snapshot = asyncio.create_task(self._snapshot_loop(), name="metrics-snapshot")
        index_watch = asyncio.create_task(self._index_loop(), name="index-watch")
        receiver = asyncio.create_task(self._receive_loop(), name="signal-receiver")
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({receiver, stopped}, return_when=asyncio.FIRST_COMPLETED)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        stopped.cancel()
        for task in self._retries:  # waiting retries stay in the inbox for the next start
            task.cancel()
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=self._drain_timeout)
            for task in pending:  # the inbox keeps these; they are re-claimed on start
                task.cancel()
        expiry.cancel()
        snapshot.cancel()
        index_watch.cancel()
        self._drained.set()  # the sender flushes what is due, then returns
        self._wake.set()
        try:
            await asyncio.wait_for(sender, timeout=self._drain_timeout)
        except TimeoutError:
            log.warning("outbox_drain_timeout")
        for task in self._courtesy:
            task.cancel()

    async def _db(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking SQLite call off the event loop (each commit waits for an fsync)."""
        if self._db_pool is None:  # outside `run` (tests, one-off maintenance calls)
            return await asyncio.to_thread(call, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool,
                                          functools.partial(call, *args, **kwargs))

    def _background(self, call: Awaitable[Any]) -> None:
        """Fire a courtesy call (read receipt) without holding up the answer."""
        task = asyncio.ensure_future(self._best_effort(call))
        self._courtesy.add(task)
        task.add_done_callback(self._courtesy.discard)

    def _retry_later(self, message: InboxMessage) -> None:
        """Try a crashed message again after a backoff, in this process: waiting for the
        next start would leave its sender unanswered (and /readyz failing) until someone
        restarts the bot. After MAX_ATTEMPTS the sender gets the apology instead."""
        delay = min(self._retry_cap, self._retry_initial * 2 ** message.attempts)

        async def retry() -> None:
            await self._sleep(delay)
            claimed = await self._db(self.store.claim, message.key)
            if claimed is not None:  # not answered, ignored or forgotten meanwhile
                self._spawn(self._process(claimed))

        task = asyncio.ensure_future(retry())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def _hold_until_up(self, message: InboxMessage, names: list[str]) -> None:
        """Keep a message that needs a dependency which is down: it stays claimed in the
        inbox (a restart re-claims it) and runs again once the dependency is back, without
        costing one of its MAX_ATTEMPTS; after `hold` seconds from its arrival it gets the
        UNAVAILABLE reply instead. Never lost, never answered twice."""
        monitor = self.dependencies
        assert monitor is not None
        self.stats.held += 1
        self._count("held", dependency=names[0])
        log.info("message_held", extra={"dependencies": names})
        left = self._hold - max(0.0, self._clock() - message.received_at)

        async def resume() -> None:
            back = left > 0 and await monitor.wait_up(names, timeout=left)
            self._spawn(self._process(message, unavailable=not back))

        task = asyncio.ensure_future(resume())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    # ----------------------------------------------------------------- receiving

    async def _receive_loop(self) -> None:
        async for envelope in self.transport.events():
            try:
                await self.handle(envelope)
            except Exception as exc:  # noqa: BLE001 - one bad message never stops the bot
                log.error("envelope_failed", extra={"error": type(exc).__name__,
                                                    "kind": envelope.kind.value})

    async def handle(self, envelope: Envelope) -> None:
        """Persist what needs an answer and schedule it; record feedback; ignore the rest."""
        uuid = envelope.source_uuid
        if uuid is None or self._is_self(uuid, envelope.source_number):
            return
        if envelope.kind is EnvelopeKind.REACTION and envelope.reaction is not None:
            reaction = envelope.reaction
            if self._is_self(reaction.target_author_uuid, reaction.target_author_number):
                await self._db(self.users.record_feedback, self.assistant.hash_user(uuid),
                               reaction.target_sent_timestamp, reaction.emoji,
                               removed=reaction.is_remove)
            return
        if envelope.kind is not EnvelopeKind.DATA or not envelope.text:
            # Edits, deletes, receipts, typing, sync, stories and calls need no answer:
            # an edited question is not re-answered (the original already was).
            return
        addressing = address(envelope, self.bot, command_prefix=self.access.command_prefix)
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
            message = await self._db(self.store.admit, uuid, envelope.timestamp,
                                     envelope.group_id or DIRECT, payload)
        if message is None:
            self.stats.duplicates += 1
            return
        if self.metrics is not None:
            self.metrics.received.add(1, {"chat": "group" if envelope.group_id else "dm"})
        self._spawn(self._process(message))

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
            await self._process_in_span(message, span, unavailable=unavailable)

    async def _process_in_span(self, message: InboxMessage, span: Span, *,
                               unavailable: bool = False) -> None:
        uuid = message.key.sender_uuid
        lock = self._user_locks.setdefault(uuid, asyncio.Lock())
        async with lock:
            try:
                # A message that crashed the bot on every earlier attempt must not do it
                # forever: it gets a short apology instead (RES-2).
                reply = GAVE_UP if message.attempts > MAX_ATTEMPTS else \
                    UNAVAILABLE if unavailable else await self._respond(message)
            except DependencyDown as down:
                span.set_attribute("signal_rag.route", "held")
                self._hold_until_up(message, down.names)
                return
            except Exception as exc:  # noqa: BLE001 - the message stays open for a retry
                log.error("message_failed", extra={"error": type(exc).__name__})
                self._count("failed", stage="graph")
                if self.monitors is not None:  # a crash never reaches the audit trail
                    self.monitors.errors.observe(ok=False)
                mark_failed(span, exc)
                self._retry_later(message)
                return
            if reply is not None and not reply.strip():  # never an empty send (the graph
                log.error("empty_reply_replaced")         # guards this too)
                reply = GAVE_UP
            if reply == GAVE_UP:
                self._count("failed", stage="gave_up")
            elif unavailable:
                self._count("failed", stage="dependency_down")
            span.set_attribute("signal_rag.route", self._routes.pop(message.key, (
                "silence" if reply is None else "service")))
            if reply is None:
                await self._db(self.store.mark_ignored, message.key)
                self.stats.ignored += 1
                return
            payload = message.payload or {}
            group = payload.get("group_id")
            trace = inject()
            parts = [ReplyPart(text=part, recipient=None if group else uuid, group_id=group,
                               quote_author=uuid if group else None,
                               quote_timestamp=message.key.msg_timestamp if group else None,
                               trace=trace)
                     for part in split_reply(reply)]
            span.set_attribute("signal_rag.reply_parts", len(parts))
            if await self._db(self.store.record_reply, message.key, parts):
                self.stats.answered += 1
                self._wake.set()
                if self.metrics is not None:
                    self.metrics.reply_latency.record(
                        max(0.0, self._clock() - message.received_at))

    async def _respond(self, message: InboxMessage) -> str | None:
        """The reply text, or None for a deliberate silence."""
        payload = message.payload or {}
        uuid = message.key.sender_uuid
        number = payload.get("number")
        text = str(payload.get("text") or "")
        user = self.assistant.hash_user(uuid)
        chat = message.chat_id
        if self.access.allowed and not ({uuid, number} & self.access.allowed):
            self._count("refused", reason="not_allowed")
            return None
        if self.access.passphrase and not await self._db(self.users.is_activated, user):
            return await self._activate(user, text)
        command = parse_command(text, self.access.command_prefix)
        if command is not None:
            return await self._command(command, message, user, chat, number)
        now = self._clock()
        if self.anomalies is not None and self.anomalies.is_muted(user, now):
            self._count("refused", reason="muted")
            return None  # repeated attacks: silence for a while (OBS-7, off by default)
        self._need_dependencies()
        decision = await asyncio.to_thread(self.limiter.hit, user)
        self._limits_storage(reachable=not decision.degraded)
        if not decision.allowed:
            self._count("refused", reason="rate_limited")
            return SLOW_DOWN.format(seconds=decision.retry_after) if decision.first_refusal \
                else None
        group = payload.get("group_id")
        if not group:
            self._background(self.transport.send_receipt(uuid, [message.key.msg_timestamp]))
        typing = asyncio.ensure_future(self._typing_after_delay(uuid, group))
        if self._typing_delay <= 0:
            await asyncio.wait({typing})  # shown before the work starts
        expires = int(payload.get("expires") or 0)
        context = None
        if expires:  # a disappearing chat forgets on its own timer (SIG-7)
            graph_context = self.assistant.context()
            context = dataclasses.replace(
                graph_context, memory_ttl=min(graph_context.memory_ttl, float(expires)))
        try:
            answer = await self.assistant.ask(text, user_id=uuid, chat=chat, context=context)
        except BaseException:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if await typing:  # no reply will clear the indicator: switch it off
                    await self._best_effort(self.transport.send_typing(
                        recipient=None if group else uuid, group_id=group, stop=True))
            raise
        typing.cancel()  # the reply clears an indicator that was shown
        if answer.fallback_reason == "index_unavailable":
            self._need_dependencies()  # the query embedding failed just now: wait for it
        if self.anomalies is not None and self._anomaly_recorder is not None:
            new_user = not await self._db(self.users.chats, user)
            self._anomaly_recorder.record(self.anomalies.observe(MessageFacts(
                user=user, at=now, length=len(text), new_user=new_user,
                blocked=answer.fallback_reason in BLOCKED_REASONS)))
        await self._db(self.users.touch_thread, user, chat, expires=expires)
        self._citations[message.key] = [dict(c) for c in answer.citations]
        self._routes[message.key] = route_of(answer.fallback_reason)
        return answer.reply

    def _need_dependencies(self) -> None:
        """Raise DependencyDown when answering needs a dependency that is down: the query
        embedding (with an index loaded; without one the answer is the index fallback
        anyway). A chat model that is down needs no wait: its circuit breaker and the
        extractive fallback answer from the documents at once (RES-1)."""
        if self.dependencies is None or self.assistant.index is None:
            return
        down = self.dependencies.down([EMBEDDINGS])
        if down:
            raise DependencyDown(down)

    async def _typing_after_delay(self, uuid: str, group: str | None) -> bool:
        """Show "typing…" once an answer takes longer than `typing_delay`; True if shown."""
        if self._typing_delay > 0:
            await self._sleep(self._typing_delay)
        return await self._best_effort(self.transport.send_typing(
            recipient=None if group else uuid, group_id=group))

    async def _activate(self, user: str, text: str) -> str | None:
        assert self.access.passphrase is not None
        state = await asyncio.to_thread(self.lockout.check, user)
        self._limits_storage(reachable=not state.degraded)
        if state.degraded and self.dependencies is not None \
                and LIMITS_STORAGE in self.dependencies.dependencies:
            # The lockout fails closed while Redis is down; rather than dropping the
            # attempt in silence, it waits in the inbox for Redis to come back.
            self.dependencies.report(LIMITS_STORAGE, False, "StorageError")
            raise DependencyDown([LIMITS_STORAGE])
        if state.locked:
            self._count("refused", reason="locked_out")
            return None
        if matches_passphrase(text, self.access.passphrase):
            await asyncio.to_thread(self.lockout.record_success, user)
            await self._db(self.users.activate, user)
            return ACTIVATED
        await asyncio.to_thread(self.lockout.record_failure, user)
        self._count("refused", reason="not_activated")
        return None  # silence: a stranger learns nothing

    async def _command(  # noqa: PLR0911 - one return per command reads best
            self, parsed: ParsedCommand, message: InboxMessage, user: str, chat: str,
            number: str | None) -> str:
        prefix = self.access.command_prefix
        command = parsed.command
        if requires_admin(command) and not (
                {message.key.sender_uuid, number} & self.access.admins):
            return NOT_ADMIN
        if command is Command.HELP:
            return help_text(prefix)
        if command is Command.INFO:
            index = self.assistant.index
            knowledge = (f"{len(index.manifest.documents)} documents ({index.manifest.chunk_count}"
                         " passages)" if index is not None else "no documents right now")
            return info_text(knowledge, prefix)
        if command is Command.RESET:
            await self.assistant.forget_thread(user, chat)
            await self._db(self.users.reset, user, chat)
            return RESET
        if command is Command.FORGET:
            for known_chat in await self._db(self.users.chats, user):
                await self.assistant.forget_thread(user, known_chat)
            await self._db(self.store.forget_user, message.key.sender_uuid, keep=message.key)
            await self._db(self.users.forget, user)
            await asyncio.to_thread(self.limiter.forget, user)
            if self.anomalies is not None:
                self.anomalies.forget(user)
            return FORGOTTEN
        if command is Command.SOURCES:
            return await self._sources(user, chat)
        if command is Command.STATUS:
            return await self._status()
        return unknown_command_hint(prefix)

    async def _sources(self, user: str, chat: str) -> str:
        sources = await self._db(self.users.last_sources, user, chat)
        if not sources:
            return "There is no earlier answer with sources in this chat."
        lines = [f"[{s['number']}] {s['title']} ({s['source']}"
                 + (f", p. {s['page']})" if s.get("page") else ")") for s in sources]
        return "Sources of the last answer:\n" + "\n".join(lines)

    async def _status(self) -> str:
        counts = await self.counts()
        transport = self.transport.status
        index = self.assistant.index
        return "\n".join([
            f"signal-cli: {transport.state}, {transport.reconnects} reconnects",
            f"index: {'loaded' if index is not None else 'unavailable'}",
            f"model circuit: {self.assistant.breaker.state.value}",
            f"inbox: {counts.inbox}", f"outbox: {counts.outbox}",
            f"answered {self.stats.answered}, ignored {self.stats.ignored}, "
            f"sent {self.stats.sent}, failed sends {self.stats.send_failed}",
        ])

    async def counts(self) -> StoreCounts:
        """Inbox and outbox row counts (for /status, readiness and metrics)."""
        return await self._db(self.store.counts)

    def _count(self, counter: str, **attributes: str) -> None:
        if self.metrics is not None:
            getattr(self.metrics, counter).add(1, attributes)

    async def refresh_snapshot(self) -> None:
        """Update the gauges' values: queue depths, circuit, index, active users."""
        if self.metrics is None:
            return
        counts = await self.counts()
        active = await self._db(self.users.active_users, 3600.0)
        snapshot = self.metrics.snapshot
        snapshot.inbox_open = counts.inbox["pending"] + counts.inbox["processing"]
        snapshot.outbox_pending = counts.outbox["pending"]
        snapshot.oldest_unanswered_s = counts.oldest_unanswered_age or 0.0
        snapshot.circuit = self.assistant.breaker.state.value
        index = self.assistant.index
        snapshot.index_chunks = index.manifest.chunk_count if index is not None else 0
        snapshot.index_built_at = index.manifest.created_at or None if index is not None \
            else None
        snapshot.active_users_1h = active

    async def _snapshot_loop(self) -> None:
        while self.metrics is not None:
            try:
                await self.refresh_snapshot()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.error("metrics_snapshot_failed", extra={"error": type(exc).__name__})
            await self._sleep(self._snapshot_interval)

    async def check_index(self) -> None:
        """Pick up a new index after `ingest`, or notice a damaged one, without a restart
        (RES-4). A changed directory is reloaded (and verified); an unchanged one is
        re-verified every `index_verify_interval` seconds. A damaged live index is replaced
        by the last-known-good copy when there is one; otherwise the bot answers from the
        fallback path until a good index appears, and operators are alerted once."""
        path = self._watched_index_path()
        fingerprint = await asyncio.to_thread(index_fingerprint, path)
        changed = fingerprint != self._index_fingerprint
        due = self._clock() - self._index_verified_at >= self._index_verify_interval
        if not changed and not due:
            return
        had_index = self.assistant.index is not None
        if not changed and had_index:
            try:
                await asyncio.to_thread(verify_index, path)
            except KnowledgeIndexError:
                changed = True  # damaged in place: reload, which restores the last good copy
        if changed or not had_index:
            try:
                index = await asyncio.to_thread(load_knowledge, self.assistant.settings,
                                                self.assistant.embedder, path,
                                                endpoint_may_be_down=True)
            except KnowledgeIndexError as exc:
                self.assistant.index = None
                if had_index:  # once per loss; a missing index at start was logged then
                    log.error("index_unavailable", extra={"error": type(exc).__name__})
                    self._raise_alert(INDEX_CORRUPT)
            else:
                self.assistant.index = index
                if self.monitors is not None:
                    self.monitors.manager.resolve(INDEX_CORRUPT)
                if index.restored_from_last_good:
                    self._raise_alert(INDEX_RESTORED)
                if changed or not had_index:
                    log.info("index_loaded", extra={"chunks": index.manifest.chunk_count})
            fingerprint = await asyncio.to_thread(index_fingerprint, path)
        self._index_fingerprint = fingerprint
        self._index_verified_at = self._clock()

    def _watched_index_path(self) -> Path:
        """The loaded index's own directory (it may not be the configured one, e.g. in
        tests and benchmarks), else the configured one, where `ingest` will put it."""
        index = self.assistant.index
        return index.path if index is not None else self.assistant.settings.index_path

    async def _index_loop(self) -> None:
        self._index_fingerprint = await asyncio.to_thread(
            index_fingerprint, self._watched_index_path())
        while True:
            await self._sleep(self._index_check_interval)
            try:
                await self.check_index()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.error("index_check_failed", extra={"error": type(exc).__name__})

    def _limits_storage(self, *, reachable: bool) -> None:
        """Alert while the shared rate-limit store (Redis) is unreachable: the limiter then
        counts per process and the activation lockout fails closed, so new users cannot
        activate; resolve when a decision comes from the store again."""
        if self.dependencies is not None and reachable:
            # Only successes: a degraded decision may come from the limiter's local fallback
            # window, which outlasts the outage; the probe and the lockout report failures.
            self.dependencies.report(LIMITS_STORAGE, True)
        if not reachable:
            self._raise_alert(LIMITS_STORAGE_UNREACHABLE)
        elif self.monitors is not None:
            self.monitors.manager.resolve(LIMITS_STORAGE_UNREACHABLE)

    def _raise_alert(self, kind: str) -> None:
        self.stats.alerts.append(kind)
        self._alert(kind)

    async def _best_effort(self, call: Awaitable[Any] | None) -> bool:
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

    async def expire_memory(self) -> int:
        """Delete conversation memory idle for longer than the graph's memory TTL (ACC-4),
        or than the chat's disappearing-message timer (SIG-7)."""
        ttl = self.assistant.context().memory_ttl
        expired: list[Thread] = await self._db(self.users.inactive_threads, ttl)
        for thread in expired:
            await self.assistant.forget_thread(thread.user, thread.chat)
            await self._db(self.users.drop_thread, thread.user, thread.chat,
                           purge_answers=thread.expires > 0)
        return len(expired)

    async def purge_queue(self) -> int:
        """Delete closed inbox/outbox rows older than the queue retention: they hold only
        who wrote when (for redelivery dedupe), and that must not be kept forever."""
        purged: int = await self._db(self.store.purge_answered, self._queue_retention)
        self._queue_purged_at = self._clock()
        if purged:
            log.info("queue_purged", extra={"rows": purged})
        return purged

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.expire_memory()
                if (self._queue_purged_at is None
                        or self._clock() - self._queue_purged_at >= 3600):  # hourly
                    await self.purge_queue()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.error("memory_expiry_failed", extra={"error": type(exc).__name__})
            await self._sleep(self._expiry_interval)

    # ----------------------------------------------------------------- sending

    async def _send_loop(self) -> None:
        while True:
            due = await self._db(self.store.due_outbox, self._clock())
            if due:
                await self._send_due(due)
                continue  # sending a part makes the next part of that reply due
            if self._drained.is_set():
                return  # drained what was due; the rest stays in the outbox
            self._wake.clear()
            next_at = await self._db(self.store.next_due_at)
            wait = 1.0 if next_at is None else min(1.0, max(0.0, next_at - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _send_due(self, due: list[OutboxItem]) -> None:
        """Different chats in parallel; within one chat, in order, stopping at the first
        part that must wait, so a later reply never overtakes an earlier one."""
        chats: dict[tuple[str | None, str | None], list[OutboxItem]] = {}
        for item in due:
            chats.setdefault((item.recipient, item.group_id), []).append(item)

        async def send_chat(items: list[OutboxItem]) -> None:
            async with self._send_slots:
                for item in items:
                    if not await self._send_one(item):
                        return

        await asyncio.gather(*(send_chat(items) for items in chats.values()))

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
        await self._db(self.store.mark_sent, item.id, result.timestamp or 0)
        self.stats.sent += 1
        if item.part == 0 and result.timestamp:
            user = self.assistant.hash_user(item.key.sender_uuid)
            await self._db(self.users.remember_answer, user, item.group_id or DIRECT,
                           result.timestamp, self._citations.pop(item.key, []))
        return True

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
            await self._db(self.store.mark_failed, item.id, type(exc).__name__)
            self.stats.send_failed += 1
            self._count("failed", stage="send")
            return True
        delay = min(self._retry_cap, self._retry_initial * 2 ** item.attempts)
        await self._retry(item, delay, exc)  # network trouble and anything unexpected
        return False

    async def _retry(self, item: OutboxItem, delay: float, exc: Exception,
                     alert: str | None = None) -> None:
        await self._db(self.store.mark_retry, item.id, self._clock() + delay,
                       type(exc).__name__)
        self.stats.send_retries += 1
        if alert:
            self._raise_alert(alert)


def index_fingerprint(path: Path) -> IndexFingerprint:
    """Names, sizes and modification times of the index's files (None when missing):
    cheap enough to compare every few seconds, and `ingest`'s directory swap changes it."""
    if not path.is_dir():
        return None
    return tuple(sorted((str(file.relative_to(path)), file.stat().st_size,
                         file.stat().st_mtime_ns) for file in path.rglob("*") if file.is_file()))
