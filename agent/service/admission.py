"""Who gets an answer at all: allow list, activation and its lockout, commands, mute and
rate limits (ACC-1, ACC-2, OBS-7). `Gate.decide` returns a typed decision; only `Admit`
goes on to the graph (`agent/service/responder.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

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
from agent.observability.alerts import LIMITS_STORAGE_UNREACHABLE
from agent.observability.dependencies import EMBEDDINGS, LIMITS_STORAGE
from agent.service.common import (
    Alerting,
    Clock,
    Db,
    DependencyDown,
    ServiceStats,
    count,
)

if TYPE_CHECKING:
    from agent.anomaly_rules import AnomalyDetector
    from agent.assistant import Assistant
    from agent.observability.dependencies import DependencyMonitor
    from agent.observability.metrics import BotMetrics
    from agent.ratelimit import ActivationLockout, UserRateLimiter
    from agent.signal import SignalTransport
    from agent.store import InboxMessage, Store
    from agent.users import UserDirectory

ACTIVATED = "Welcome! You can now ask me questions about the documents. Send /help for more."
FORGOTTEN = ("Done: everything stored about you was deleted. "
             "Send the passphrase again to start over.")
RESET = "Conversation cleared."
NOT_ADMIN = "That command is for administrators only."
SLOW_DOWN = "You are sending messages too fast. Please try again in {seconds} s."


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


@dataclass(frozen=True, slots=True)
class Silence:
    """No reply at all (a stranger, a locked-out or muted user, a repeated refusal)."""

    reason: str
    """The `refused` counter's reason: not_allowed, not_activated, locked_out, muted,
    rate_limited."""


@dataclass(frozen=True, slots=True)
class Respond:
    """A fixed reply from the service itself: activation, a command, the rate notice."""

    text: str


@dataclass(frozen=True, slots=True)
class Admit:
    """A question to answer through the graph."""

    user: str
    """The sender's HMAC."""
    text: str
    at: float
    """When it was admitted (the anomaly detector's time)."""


Decision = Silence | Respond | Admit


def require_embeddings(dependencies: DependencyMonitor | None, index_loaded: bool) -> None:
    """Raise DependencyDown when answering needs a dependency that is down: the query
    embedding (with an index loaded; without one the answer is the index fallback
    anyway). A chat model that is down needs no wait: its circuit breaker and the
    extractive fallback answer from the documents at once (RES-1)."""
    if dependencies is None or not index_loaded:
        return
    down = dependencies.down([EMBEDDINGS])
    if down:
        raise DependencyDown(down)


class CommandRunner:
    """The chat commands (/help, /info, /reset, /forget, /sources, /status)."""

    def __init__(self, *, access: AccessPolicy, assistant: Assistant,
                 transport: SignalTransport, store: Store, users: UserDirectory, db: Db,
                 limiter: UserRateLimiter, anomalies: AnomalyDetector | None,
                 stats: ServiceStats, keep_feedback_text: bool = False) -> None:
        self._access = access
        self._assistant = assistant
        self._transport = transport
        self._store = store
        self._users = users
        self._db = db
        self._limiter = limiter
        self._anomalies = anomalies
        self._stats = stats
        self._keep_feedback_text = keep_feedback_text
        """/info says when reactions keep the question (FEEDBACK__KEEP_TEXT, EV-4)."""

    async def run(  # noqa: PLR0911 - one return per command reads best
            self, parsed: ParsedCommand, message: InboxMessage, user: str, chat: str,
            number: str | None) -> str:
        prefix = self._access.command_prefix
        command = parsed.command
        if requires_admin(command) and not (
                {message.key.sender_uuid, number} & self._access.admins):
            return NOT_ADMIN
        if command is Command.HELP:
            return help_text(prefix)
        if command is Command.INFO:
            index = self._assistant.index
            knowledge = (f"{len(index.manifest.documents)} documents ({index.manifest.chunk_count}"
                         " passages)" if index is not None else "no documents right now")
            return info_text(knowledge, prefix, keep_feedback_text=self._keep_feedback_text)
        if command is Command.RESET:
            await self._assistant.forget_thread(user, chat)
            await self._db(self._users.reset, user, chat)
            return RESET
        if command is Command.FORGET:
            for known_chat in await self._db(self._users.chats, user):
                await self._assistant.forget_thread(user, known_chat)
            await self._db(self._store.forget_user, message.key.sender_uuid, keep=message.key)
            await self._db(self._users.forget, user)
            await asyncio.to_thread(self._limiter.forget, user)
            if self._anomalies is not None:
                self._anomalies.forget(user)
            return FORGOTTEN
        if command is Command.SOURCES:
            return await self._sources(user, chat)
        if command is Command.STATUS:
            return await self._status()
        return unknown_command_hint(prefix)

    async def _sources(self, user: str, chat: str) -> str:
        sources = await self._db(self._users.last_sources, user, chat)
        if not sources:
            return "There is no earlier answer with sources in this chat."
        lines = [f"[{s['number']}] {s['title']} ({s['source']}"
                 + (f", p. {s['page']})" if s.get("page") else ")") for s in sources]
        return "Sources of the last answer:\n" + "\n".join(lines)

    async def _status(self) -> str:
        counts = await self._db(self._store.counts)
        transport = self._transport.status
        index = self._assistant.index
        stats = self._stats
        return "\n".join([
            f"signal-cli: {transport.state}, {transport.reconnects} reconnects",
            f"index: {'loaded' if index is not None else 'unavailable'}",
            f"model circuit: {self._assistant.breaker.state.value}",
            f"inbox: {counts.inbox}", f"outbox: {counts.outbox}",
            f"answered {stats.answered}, ignored {stats.ignored}, "
            f"sent {stats.sent}, failed sends {stats.send_failed}",
        ])


class Gate:
    """Decides what a claimed message gets, in this order: allow list, activation (with
    its lockout), commands, mute, dependencies, rate limit."""

    def __init__(self, *, access: AccessPolicy, hash_user: Callable[[str], str],
                 index_loaded: Callable[[], bool], users: UserDirectory, db: Db,
                 lockout: ActivationLockout, limiter: UserRateLimiter,
                 commands: CommandRunner, alerting: Alerting,
                 anomalies: AnomalyDetector | None = None,
                 dependencies: DependencyMonitor | None = None,
                 metrics: BotMetrics | None = None, clock: Clock) -> None:
        self._access = access
        self._hash_user = hash_user
        self._index_loaded = index_loaded
        self._users = users
        self._db = db
        self._lockout = lockout
        self._limiter = limiter
        self._commands = commands
        self._alerting = alerting
        self._anomalies = anomalies
        self._dependencies = dependencies
        self._metrics = metrics
        self._clock = clock

    @property
    def command_prefix(self) -> str:
        return self._access.command_prefix

    async def decide(self, message: InboxMessage) -> Decision:
        """Raises DependencyDown when the decision needs a dependency that is down."""
        payload = message.payload or {}
        uuid = message.key.sender_uuid
        number = payload.get("number")
        text = str(payload.get("text") or "")
        user = self._hash_user(uuid)
        if self._access.allowed and not ({uuid, number} & self._access.allowed):
            return self._refuse("not_allowed")
        if self._access.passphrase and not await self._db(self._users.is_activated, user):
            return await self._activate(user, text)
        command = parse_command(text, self._access.command_prefix)
        if command is not None:
            return Respond(await self._commands.run(command, message, user, message.chat_id,
                                                    number))
        now = self._clock()
        if self._anomalies is not None and self._anomalies.is_muted(user, now):
            return self._refuse("muted")  # repeated attacks: silence for a while (OBS-7)
        require_embeddings(self._dependencies, self._index_loaded())
        decision = await asyncio.to_thread(self._limiter.hit, user)
        self._limits_storage(reachable=not decision.degraded)
        if not decision.allowed:
            refused = self._refuse("rate_limited")
            return Respond(SLOW_DOWN.format(seconds=decision.retry_after)) \
                if decision.first_refusal else refused
        return Admit(user=user, text=text, at=now)

    def _refuse(self, reason: str) -> Silence:
        count(self._metrics, "refused", reason=reason)
        return Silence(reason)

    async def _activate(self, user: str, text: str) -> Decision:
        assert self._access.passphrase is not None
        state = await asyncio.to_thread(self._lockout.check, user)
        self._limits_storage(reachable=not state.degraded)
        if state.degraded and self._dependencies is not None \
                and LIMITS_STORAGE in self._dependencies.dependencies:
            # The lockout fails closed while Redis is down; rather than dropping the
            # attempt in silence, it waits in the inbox for Redis to come back.
            self._dependencies.report(LIMITS_STORAGE, False, "StorageError")
            raise DependencyDown([LIMITS_STORAGE])
        if state.locked:
            return self._refuse("locked_out")
        if matches_passphrase(text, self._access.passphrase):
            await asyncio.to_thread(self._lockout.record_success, user)
            await self._db(self._users.activate, user)
            return Respond(ACTIVATED)
        await asyncio.to_thread(self._lockout.record_failure, user)
        return self._refuse("not_activated")  # silence: a stranger learns nothing

    def _limits_storage(self, *, reachable: bool) -> None:
        """Alert while the shared rate-limit store (Redis) is unreachable: the limiter then
        counts per process and the activation lockout fails closed, so new users cannot
        activate; resolve when a decision comes from the store again.

        When the dependency monitor probes Redis, it owns the alert (it fires after the
        grace period, once per outage, and resolves when the probe passes): a decision
        only reports what it saw. Alerting here on every degraded decision made the alert
        flap after Redis returned, once per stale pooled connection failing its first
        command (found by the fault campaign)."""
        if self._dependencies is not None and LIMITS_STORAGE in self._dependencies.dependencies:
            if reachable:
                # Only successes: a degraded decision may come from the limiter's local
                # fallback window, which outlasts the outage; the probe and the lockout
                # report failures.
                self._dependencies.report(LIMITS_STORAGE, True)
            return
        if not reachable:
            self._alerting.raise_(LIMITS_STORAGE_UNREACHABLE)
        else:
            self._alerting.resolve(LIMITS_STORAGE_UNREACHABLE)
