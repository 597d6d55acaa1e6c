"""Operator alerts (OBS-6): de-duplicated, rate limited, delivered to admins over Signal
and/or a webhook, with a "resolved" message when a condition clears.

Why our own code: the whole job is a small state machine per condition (firing, notified,
resolved, cool-down) and two notifiers; alerting products (Alertmanager, PagerDuty) sit
behind the webhook if an operator has one, and no library does this in-process without a
server of its own.

`AlertManager.alert()` (the graph's `Alerts` protocol) and `manager(kind)` (the service's
callback) are synchronous, thread-safe, never block and never raise: they update the state
and put a notification on a bounded queue; `run()` delivers it in the background. Fields are
content-free by contract (names, counts, error classes); they are redacted and escaped here
anyway, and capped in size and number, so an alert can never carry message text or forge a
line. Rate limit: at most one "firing" notification per condition per `cooldown`; a
condition that fires again after it resolved, within the cool-down, is tracked silently and
its later "resolved" is not sent either, so what admins saw last stays true.

The monitors (`agent/observability/monitors.py`) turn raw signals into conditions that
fire and resolve through the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from pydantic import SecretStr

from agent.observability.logs import CONTENT_KEYS, REDACTED, REDACTOR
from graph.contract import (
    GUARD_ERROR,
    PROMPT_LEAK,
)

if TYPE_CHECKING:
    from graph.context import Alerts

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN = 900.0
DEFAULT_QUEUE_SIZE = 256
MAX_CONDITIONS = 256
MAX_FIELDS = 16
MAX_FIELD_CHARS = 200
MAX_NAME_CHARS = 64
SERVICE = "signal-rag"

# The condition catalogue: every condition the bot raises is named here and only here,
# except those graph nodes raise (GUARD_ERROR, PROMPT_LEAK), named in graph/contract.py
# (docs/operations.md, "Alerts", says what each means; docs/runbook.md what to do).
MODEL_AUTH_FAILED = "model_auth_failed"
MODEL_QUOTA_EXHAUSTED = "model_quota_exhausted"
MODEL_CIRCUIT_OPEN = "model_circuit_open"
INDEX_CORRUPT = "index_corrupt"
INDEX_RESTORED = "index_restored_from_last_good"
SIGNAL_CLI_UNREACHABLE = "signal_cli_unreachable"
DISK_SPACE_LOW = "disk_space_low"
ERROR_RATE_HIGH = "error_rate_high"
SIGNAL_RATE_LIMITED = "signal_rate_limited"
SIGNAL_UNTRUSTED_IDENTITY = "signal_untrusted_identity"
ATTACK_PROBING = "attack_probing"
LIMITS_STORAGE_UNREACHABLE = "limits_storage_unreachable"
EMBEDDINGS_UNREACHABLE = "embeddings_unreachable"
MODEL_UNREACHABLE = "model_unreachable"
STORE_DAMAGED = "store_damaged"
DATA_DIR_UNWRITABLE = "data_dir_unwritable"
CONDITIONS: dict[str, str] = {
    MODEL_AUTH_FAILED: "the chat model refused our API key",
    MODEL_QUOTA_EXHAUSTED: "the chat model's quota or billing limit is used up",
    MODEL_CIRCUIT_OPEN: "the model circuit breaker is open: answers come from the fallback",
    INDEX_CORRUPT: "the live index failed verification and no good copy could be loaded",
    INDEX_RESTORED: "the live index was damaged; the last good copy is live",
    SIGNAL_CLI_UNREACHABLE: "the signal-cli daemon has not been reachable for a while",
    DISK_SPACE_LOW: "free disk space in the data directory is below the minimum",
    ERROR_RATE_HIGH: "too many messages end in an error",
    GUARD_ERROR: "a guard raised: messages are refused (fail closed)",
    PROMPT_LEAK: "a reply carried the system prompt or its canary and was blocked",
    SIGNAL_RATE_LIMITED: "Signal rate limited our sends (or wants a CAPTCHA)",
    SIGNAL_UNTRUSTED_IDENTITY: "a recipient's safety number changed; sends wait",
    ATTACK_PROBING: "many new users sent blocked first messages",
    LIMITS_STORAGE_UNREACHABLE: "the shared rate-limit store is unreachable: limits are "
                                "per process and new users cannot activate",
    EMBEDDINGS_UNREACHABLE: "the embedding endpoint has not answered for a while: "
                            "questions wait in the inbox",
    MODEL_UNREACHABLE: "the chat model server has not answered for a while: answers come "
                       "from the fallback",
    DATA_DIR_UNWRITABLE: "the data directory refuses writes (disk full, read-only, I/O "
                         "errors): new messages wait in memory until it takes them",
    STORE_DAMAGED: "a damaged database file was kept aside and a fresh one started: what "
                   "it held (open messages, activations) is gone",
}
"""Known conditions and a one-line meaning, used in the Signal message."""

Status = Literal["firing", "resolved"]
_NAME = re.compile(r"[^a-z0-9_.:-]+")


def clean_name(name: object) -> str:
    """A condition or field name reduced to `[a-z0-9_.:-]`, at most 64 characters."""
    text = _NAME.sub("_", str(name).lower())[:MAX_NAME_CHARS].strip("_")
    return text or "unnamed"


def clean_fields(fields: Mapping[str, object]) -> dict[str, str]:
    """Fields as short, escaped, redacted strings; content keys dropped; at most 16."""
    cleaned: dict[str, str] = {}
    for key, value in list(fields.items())[:MAX_FIELDS]:
        name = clean_name(key)
        if name in CONTENT_KEYS:
            cleaned[name] = REDACTED
            continue
        try:
            raw = str(value)
        except Exception:  # noqa: BLE001 - a broken field must not cost the alert
            raw = "[unprintable]"
        text = REDACTOR.clean(raw[:MAX_FIELD_CHARS * 4])
        cleaned[name] = text[:MAX_FIELD_CHARS] + ("…" if len(text) > MAX_FIELD_CHARS else "")
    return cleaned


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to operators; what every notifier receives."""

    condition: str
    status: Status
    fields: Mapping[str, str]
    at: float
    """Epoch seconds."""
    service: str = SERVICE

    @property
    def at_iso(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"condition": self.condition, "status": self.status, "fields": dict(self.fields),
                "at": self.at_iso, "service": self.service}

    def text(self) -> str:
        """The Signal message to admins: short, one condition, no content."""
        meaning = CONDITIONS.get(self.condition, "")
        head = (f"[{self.service}] ALERT {self.condition}" if self.status == "firing"
                else f"[{self.service}] RESOLVED {self.condition}")
        lines = [head]
        if meaning:
            lines.append(meaning)
        lines.extend(f"{key}: {value}" for key, value in self.fields.items())
        lines.append(f"at {self.at_iso}")
        return "\n".join(lines)


class Notifier(Protocol):
    """Delivers one notification; may raise (the manager logs it and carries on)."""

    name: str

    async def notify(self, notification: Notification) -> None: ...


class AlertControl(Protocol):
    """What monitors need: raise and clear a condition."""

    def alert(self, condition: str, **fields: str) -> None: ...

    def resolve(self, condition: str) -> None: ...


@dataclass(slots=True)
class _Condition:
    active: bool = False
    notified: bool = False
    """A "firing" notification was sent for the current episode."""
    last_sent: float | None = None
    """When the last "firing" notification was queued."""
    suppressed: int = 0
    """Alerts since the last notification that the cool-down held back."""
    seen: float = 0.0


@dataclass(slots=True)
class AlertStats:
    """Counters for /status and tests: what the manager did with each alert."""

    queued: int = 0
    suppressed: int = 0
    dropped: int = 0
    delivered: int = 0
    failed: int = 0


class AlertManager:
    """Implements `graph.context.Alerts` (`alert(condition, **fields)`) and the service's
    `alert(kind)` callback (`manager(kind)`), plus `resolve(condition)`."""

    def __init__(self, notifiers: Sequence[Notifier] = (), *,
                 cooldown: float = DEFAULT_COOLDOWN, queue_size: int = DEFAULT_QUEUE_SIZE,
                 clock: Callable[[], float] = time.time, service: str = SERVICE,
                 notify_timeout: float = 30.0, drain_timeout: float = 5.0) -> None:
        if cooldown < 0 or queue_size < 1:
            raise ValueError("cooldown must be >= 0 and queue_size >= 1")
        self.notifiers = list(notifiers)
        self.cooldown = cooldown
        self.stats = AlertStats()
        self._queue_size = queue_size
        self._clock = clock
        self._service = clean_name(service)
        self._notify_timeout = notify_timeout
        self._drain_timeout = drain_timeout
        self._lock = threading.Lock()
        self._conditions: dict[str, _Condition] = {}
        self._queue: deque[Notification] = deque()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------- the sync API

    def __call__(self, kind: str) -> None:
        self.alert(kind)

    def alert(self, condition: str, **fields: str) -> None:
        try:
            self._fire(clean_name(condition), fields)
        except Exception as exc:  # noqa: BLE001 - raising an alert must never fail a caller
            log.error("alert_failed", extra={"error": type(exc).__name__})

    def resolve(self, condition: str) -> None:
        try:
            self._resolve(clean_name(condition))
        except Exception as exc:  # noqa: BLE001 - as in alert()
            log.error("alert_failed", extra={"error": type(exc).__name__})

    def is_active(self, condition: str) -> bool:
        with self._lock:
            state = self._conditions.get(clean_name(condition))
            return state is not None and state.active

    @property
    def active(self) -> frozenset[str]:
        with self._lock:
            return frozenset(name for name, s in self._conditions.items() if s.active)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _fire(self, condition: str, fields: Mapping[str, object]) -> None:
        now = self._clock()
        with self._lock:
            state = self._state(condition, now)
            state.active = True
            due = state.last_sent is None or now - state.last_sent >= self.cooldown
            if not due:
                state.suppressed += 1
                self.stats.suppressed += 1
                log.debug("alert_suppressed", extra={"condition": condition})
                return
            cleaned = clean_fields(fields)
            if state.suppressed:
                cleaned["repeats"] = str(state.suppressed)
            queued = self._put(Notification(condition, "firing", cleaned, now, self._service))
            if queued:  # a dropped notification is tried again at the next alert
                state.notified = True
                state.last_sent = now
                state.suppressed = 0
        log.error("operator_alert", extra={"condition": condition, "status": "firing",
                                           "queued": queued, "fields": cleaned})

    def _resolve(self, condition: str) -> None:
        now = self._clock()
        with self._lock:
            state = self._conditions.get(condition)
            if state is None or not state.active:
                return
            state.active = False
            state.seen = now
            state.suppressed = 0
            if not state.notified:
                return  # admins never heard of this episode
            state.notified = False
            queued = self._put(Notification(condition, "resolved", {}, now, self._service))
        log.warning("operator_alert", extra={"condition": condition, "status": "resolved",
                                             "queued": queued})

    def _state(self, condition: str, now: float) -> _Condition:
        state = self._conditions.get(condition)
        if state is None:
            if len(self._conditions) >= MAX_CONDITIONS:
                self._prune()
            state = self._conditions[condition] = _Condition()
        state.seen = now
        return state

    def _prune(self) -> None:
        """Forget the stalest half of the inactive conditions (else the stalest active one)."""
        idle = [name for name, s in self._conditions.items() if not s.active]
        idle.sort(key=lambda name: self._conditions[name].seen)
        for name in idle[: max(1, len(idle) // 2)]:
            del self._conditions[name]
        if len(self._conditions) >= MAX_CONDITIONS:  # all active: drop the stalest one
            stalest = min(self._conditions, key=lambda name: self._conditions[name].seen)
            del self._conditions[stalest]

    def _put(self, notification: Notification) -> bool:
        if len(self._queue) >= self._queue_size:
            self.stats.dropped += 1
            return False
        self._queue.append(notification)
        self.stats.queued += 1
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)
        return True

    # ------------------------------------------------------------- delivery

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver queued notifications until `stop` is set, then what is left (bounded
        by `drain_timeout`)."""
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                await self._deliver_queued()
                waker = asyncio.ensure_future(wake.wait())
                await asyncio.wait({waker, stopped}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                wake.clear()
            try:
                await asyncio.wait_for(self._deliver_queued(), self._drain_timeout)
            except TimeoutError:
                log.warning("alert_drain_timeout", extra={"pending": self.pending})
        finally:
            stopped.cancel()
            self._loop = self._wake = None

    async def start(self) -> None:
        """Run the delivery loop as a background task (stop it with `aclose`)."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self.run(self._stop), name="alert-delivery")
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        task, stop = self._task, self._stop
        self._task = self._stop = None
        if task is not None and stop is not None:
            stop.set()
            await task

    async def _deliver_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                notification = self._queue.popleft()
            await self.deliver(notification)

    async def deliver(self, notification: Notification) -> None:
        """Hand one notification to every notifier at once; failures are logged, not raised."""
        await asyncio.gather(*(self._notify(n, notification) for n in self.notifiers))

    async def _notify(self, notifier: Notifier, notification: Notification) -> None:
        try:
            await asyncio.wait_for(notifier.notify(notification), self._notify_timeout)
        except Exception as exc:  # noqa: BLE001 - one broken notifier never stops the others
            self.stats.failed += 1
            log.error("alert_delivery_failed", extra={
                "notifier": notifier.name, "condition": notification.condition,
                "error": type(exc).__name__})
        else:
            self.stats.delivered += 1


if TYPE_CHECKING:
    def _is_graph_alerts(manager: AlertManager) -> Alerts:
        return manager  # mypy proves the manager satisfies the graph's protocol


# ------------------------------------------------------------------ notifiers


class WebhookNotifier:
    """POSTs the notification as JSON; one retry on a network error, 429 or 5xx.

    The URL often carries a token (Slack, Mattermost), so it is never logged. Proxy
    environment variables are not used (SEC-5: connect only to configured hosts).
    """

    name = "webhook"

    def __init__(self, url: SecretStr | str, *, timeout: float = 10.0, retries: int = 1,
                 retry_delay: float = 1.0, client: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        secret = url if isinstance(url, SecretStr) else SecretStr(url)
        if not secret.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the webhook URL must start with http:// or https://")
        self._url = secret
        """Unwrapped only for the request, so no repr or traceback shows its token."""
        self._timeout = timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._client = client
        self._own_client = client is None
        self._sleep = sleep
        self.sent = 0

    async def notify(self, notification: Notification) -> None:
        """Never raises: a failure is a content-free `webhook_failed` log event."""
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        body = notification.payload()
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            retryable = True
            try:
                response = await client.post(self._url.get_secret_value(), json=body)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            else:
                if response.is_success:
                    self.sent += 1
                    return
                outcome = f"status_{response.status_code}"
                retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable or attempt == attempts:
                log.error("webhook_failed", extra={"condition": notification.condition,
                                                   "outcome": outcome, "attempts": attempt})
                return
            await self._sleep(self._retry_delay)

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None


Send = Callable[[str, str], Awaitable[object]]
"""`send(recipient, text)`: bound to the Signal transport by `serve`."""

SIGNAL_SKIPPED = frozenset({SIGNAL_CLI_UNREACHABLE, SIGNAL_RATE_LIMITED})
"""Conditions not sent over Signal: it cannot deliver them, or sending makes it worse."""


class SignalAdminNotifier:
    """Messages every admin; one failing admin does not keep it from the others."""

    name = "signal"

    def __init__(self, send: Send, admins: Iterable[str], *,
                 skip: frozenset[str] = SIGNAL_SKIPPED) -> None:
        self._send = send
        self.admins = tuple(sorted(set(admins)))
        self._skip = skip

    async def notify(self, notification: Notification) -> None:
        if notification.condition in self._skip or not self.admins:
            return
        text = notification.text()
        results = await asyncio.gather(*(self._send(admin, text) for admin in self.admins),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:  # recipients are phone numbers or ids: never logged
            log.error("admin_alert_failed", extra={"condition": notification.condition,
                                                   "error": type(failure).__name__})
        if failures and len(failures) == len(results):
            raise failures[0]
