"""Per-user message rate limits (ACC-5) and the activation-attempt lockout (ACC-1).

Why it exists: both must hold across replicas, so both sit on the `limits` library's
moving-window strategy over one storage — `memory://` for a single process (the default)
or `redis://host:port` shared by every replica — instead of counters of our own.

Refusal notices ("the first refusal in a window says when to retry, further ones are
silent"). The "already told" mark lives in the same storage as the limits, as a second
`limits` item: "1 notice per window" (same window length as the limit that refused),
keyed by user and by the *refusal episode*. The episode id is the reset time of the
refusing limit (oldest entry in the moving window + window length), read back from the
storage, so every replica computes the same id and the storage's atomic acquire lets
exactly one replica win the notice. A new episode begins only after an entry has left
the window (i.e. a slot freed); then the user is told once more, with the new wait.
The notice entry expires by itself after one window; nothing needs cleaning up.

Failure behaviour (DESIGN: every guard documents it):

- `UserRateLimiter` *fails over*, neither open nor closed: when the shared storage is
  unreachable it decides with a per-process `memory://` limiter of the same rates, marks
  every such decision `degraded=True` (the service raises the
  `limits_storage_unreachable` alert, OBS-6) and re-tries the
  shared storage every `probe_interval` seconds. Why not closed (SEC-6's default): a Redis
  outage would turn every answer for every user into "temporarily unavailable" — an
  auxiliary store taking the whole bot down, which no user expects, while the limit exists
  to protect cost and fairness, which a local limit still does (at most N x the rate with
  N replicas). Why not open: a flood would then reach the paid model exactly while the
  operator is busy with the outage. Counts restart from zero in the fallback, so a user
  may get one extra allowance at the switch. If the local fallback itself raises, the
  error propagates and the caller's guard-error path (fail closed) applies.
- `ActivationLockout` *fails closed*: storage unreachable means "locked" (`degraded=True`).
  It protects the passphrase from guessing; only users who are not activated yet touch
  it, and they get no answer anyway (ACC-1), so closing costs activated users nothing.

Time: `limits` reads `time.time()` itself and has no clock hook, so windows cannot be
faked in tests (they use small windows such as "3/second"). The injectable `clock` here
only paces re-probing the shared storage. Redis stores the timestamps each replica
writes, so replicas need synchronised clocks (NTP); skew shifts windows by the skew.

Blocking: calls are synchronous. With `memory://` they take microseconds; with Redis,
2-4 round trips bounded by `timeout` (default 0.5 s per call, no redis-py retry loop on
timeouts) — from asyncio, call `hit` through `asyncio.to_thread` or accept ~1 ms on
loopback. Instances are thread-safe. Keys are stored verbatim in the storage (they expire
within the longest window); pass a UUID or a pseudonymised id, never a phone number.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

DEFAULT_RATES = ("10/minute", "100/hour")
DEFAULT_ACTIVATION_FAILURES = "5/hour"
DEFAULT_LOCKOUT_SECONDS = 3600
DEFAULT_STORAGE = "memory://"
DEFAULT_NAMESPACE = "signal-rag"

__all__ = [
    "DEFAULT_RATES",
    "ActivationLockout",
    "Decision",
    "Lockout",
    "UserRateLimiter",
    "open_storage",
]


def open_storage(uri: str = DEFAULT_STORAGE, *, timeout: float = 0.5) -> Storage:
    """Build a `limits` storage from a URI without connecting (redis connects lazily).

    Storage errors are wrapped in `limits.errors.StorageError` so callers catch one type;
    Redis sockets get `timeout` for connect and read, so an unreachable host costs at most
    that per call instead of hanging the message path.
    """
    scheme = uri.split("://", 1)[0].lower()
    if scheme.startswith("async+"):
        raise ValueError(f"async storage is not supported here: {scheme}://")
    if scheme.startswith(("redis", "rediss", "valkey")):
        storage = storage_from_string(uri, wrap_exceptions=True, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
    else:
        storage = storage_from_string(uri, wrap_exceptions=True)
    if not isinstance(storage, Storage):  # pragma: no cover - async schemes refused above
        raise TypeError(f"not a synchronous storage: {scheme}://")
    return storage


def _parse_rates(rates: str | Sequence[str]) -> list[RateLimitItem]:
    text = rates if isinstance(rates, str) else ";".join(rates)
    if not text.strip():
        raise ValueError("at least one rate limit is required, e.g. '10/minute'")
    items = parse_many(text)
    # Shortest window first: if a concurrent replica wins a race between test and hit, the
    # slot spent by the refused message is in the shortest window, which frees soonest.
    return sorted(items, key=lambda item: item.get_expiry())


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one incoming message."""

    allowed: bool
    retry_after: int = 0
    """Whole seconds until a message can be accepted again (refusals only, at least 1)."""
    first_refusal: bool = False
    """True for the first refusal in this window only: say "try again in N s" once."""
    limit: str = ""
    """The refusing limit, e.g. "10 per 1 minute" (for metrics, never shown as is)."""
    degraded: bool = False
    """Decided by the local fallback because the shared storage was unreachable."""


_ALLOWED = Decision(allowed=True)
_ALLOWED_DEGRADED = Decision(allowed=True, degraded=True)


class UserRateLimiter:
    """Moving-window limits per user (default 10/minute and 100/hour), checked before any
    model call; fails over to a local limiter when the shared storage is down."""

    def __init__(self, rates: str | Sequence[str] = DEFAULT_RATES,
                 storage: str | Storage = DEFAULT_STORAGE, *,
                 namespace: str = DEFAULT_NAMESPACE, timeout: float = 0.5,
                 probe_interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._items = _parse_rates(rates)
        self._notices = {item: type(item)(1, item.multiples, namespace="NOTICE")
                         for item in self._items}
        primary = open_storage(storage, timeout=timeout) if isinstance(storage, str) else storage
        self._primary = MovingWindowRateLimiter(primary)
        self._fallback: MovingWindowRateLimiter | None = None
        self._namespace = namespace
        self._probe_interval = probe_interval
        self._clock = clock
        self._failed_at: float | None = None
        self._state_lock = threading.Lock()

    @property
    def rates(self) -> list[str]:
        return [str(item) for item in self._items]

    @property
    def degraded(self) -> bool:
        """True while decisions come from the local fallback (for /readyz and alerts)."""
        with self._state_lock:
            return self._failed_at is not None

    def hit(self, user_key: str) -> Decision:
        """Count one message from `user_key` if every limit has room; else refuse it.

        A refused message is not counted, so retrying after `retry_after` seconds works.
        """
        if self._use_primary():
            try:
                decision = self._decide(self._primary, user_key, degraded=False)
            except StorageError:
                fallback = self._fail_over()
            else:
                self._recovered()
                return decision
        else:
            fallback = self._fallback_limiter()
        return self._decide(fallback, user_key, degraded=True)

    def forget(self, user_key: str) -> bool:
        """Drop this user's counters and current notices (/forget); False if unreachable."""
        limiters = [self._primary] + ([self._fallback] if self._fallback else [])
        ids = self._ids(user_key)
        try:
            for limiter in limiters:
                for item in self._items:
                    reset = limiter.get_window_stats(item, *ids).reset_time
                    limiter.clear(self._notices[item], *self._notice_ids(user_key, reset))
                    limiter.clear(item, *ids)
        except StorageError:
            return False
        return True

    def _ids(self, user_key: str) -> tuple[str, ...]:
        return (self._namespace, "msg", user_key)

    def _notice_ids(self, user_key: str, reset_time: float) -> tuple[str, ...]:
        # Replicas read the same stored timestamp, so they format the same episode id.
        return (self._namespace, "notice", user_key, f"{reset_time:.3f}")

    def _decide(self, limiter: MovingWindowRateLimiter, user_key: str, *,
                degraded: bool) -> Decision:
        ids = self._ids(user_key)
        # Test all before hitting any, so a message refused by one limit spends no slot
        # of another (hitting in turn would let refused messages drain the hourly limit).
        refused = [item for item in self._items if not limiter.test(item, *ids)]
        if not refused:
            for item in self._items:
                if not limiter.hit(item, *ids):  # a concurrent replica took the last slot
                    refused = [item]
                    break
            else:
                return _ALLOWED_DEGRADED if degraded else _ALLOWED
        resets = [(limiter.get_window_stats(item, *ids).reset_time, item) for item in refused]
        reset_time, item = max(resets, key=lambda pair: pair[0])
        first = limiter.hit(self._notices[item], *self._notice_ids(user_key, reset_time))
        return Decision(allowed=False, retry_after=_seconds_until(reset_time),
                        first_refusal=first, limit=str(item), degraded=degraded)

    def _use_primary(self) -> bool:
        with self._state_lock:
            return (self._failed_at is None
                    or self._clock() - self._failed_at >= self._probe_interval)

    def _fail_over(self) -> MovingWindowRateLimiter:
        with self._state_lock:
            self._failed_at = self._clock()
        return self._fallback_limiter()

    def _fallback_limiter(self) -> MovingWindowRateLimiter:
        with self._state_lock:
            if self._fallback is None:
                self._fallback = MovingWindowRateLimiter(open_storage("memory://"))
            return self._fallback

    def _recovered(self) -> None:
        with self._state_lock:
            self._failed_at = None


@dataclass(frozen=True, slots=True)
class Lockout:
    """Whether a sender may try the activation passphrase now."""

    locked: bool
    retry_after: int = 0
    """Whole seconds until the lockout ends (0 when not locked or unknown)."""
    attempts_left: int = 0
    """Wrong attempts left before the lockout starts (when not locked)."""
    degraded: bool = False
    """The storage was unreachable; locked because this guard fails closed."""


_UNREACHABLE = Lockout(locked=True, degraded=True)


class ActivationLockout:
    """Locks a sender out for `lockout_seconds` (default 1 hour) after `failures` wrong
    passphrase attempts (default "5/hour": five within a moving hour); a correct one
    resets the count. Fails closed: storage unreachable means locked."""

    def __init__(self, storage: str | Storage = DEFAULT_STORAGE, *,
                 failures: str = DEFAULT_ACTIVATION_FAILURES,
                 lockout_seconds: int = DEFAULT_LOCKOUT_SECONDS,
                 namespace: str = DEFAULT_NAMESPACE, timeout: float = 0.5) -> None:
        items = parse_many(failures)
        if len(items) != 1:
            raise ValueError("failures must be one rate such as '5/hour'")
        if lockout_seconds < 1:
            raise ValueError("lockout_seconds must be at least 1")
        self._failures = items[0]
        self._lockout_seconds = lockout_seconds
        # "1 per lockout period": once hit, `test` is False until the period has passed.
        self._lock_item = RateLimitItemPerSecond(1, lockout_seconds, namespace="LOCKOUT")
        primary = open_storage(storage, timeout=timeout) if isinstance(storage, str) else storage
        self._limiter = MovingWindowRateLimiter(primary)
        self._namespace = namespace

    def check(self, sender: str) -> Lockout:
        """May `sender` try the passphrase now? Read-only."""
        try:
            return self._check(sender)
        except StorageError:
            return _UNREACHABLE

    def record_failure(self, sender: str) -> Lockout:
        """Count a wrong passphrase; the attempt that uses up the allowance starts the lockout."""
        try:
            current = self._check(sender)
            if current.locked:
                return current
            fail_ids = self._ids("fail", sender)
            counted = self._limiter.hit(self._failures, *fail_ids)
            left = self._limiter.get_window_stats(self._failures, *fail_ids).remaining
            if counted and left > 0:
                return Lockout(locked=False, attempts_left=left)
            self._limiter.hit(self._lock_item, *self._ids("lock", sender))
            # A fresh allowance after the lockout, not one left over from before it.
            self._limiter.clear(self._failures, *fail_ids)
        except StorageError:
            return _UNREACHABLE
        return Lockout(locked=True, retry_after=self._lockout_seconds)

    def record_success(self, sender: str) -> bool:
        """Reset the sender's wrong-attempt count; False if the storage was unreachable."""
        try:
            self._limiter.clear(self._failures, *self._ids("fail", sender))
            self._limiter.clear(self._lock_item, *self._ids("lock", sender))
        except StorageError:
            return False
        return True

    def _ids(self, kind: str, sender: str) -> tuple[str, ...]:
        return (self._namespace, "activation", kind, sender)

    def _check(self, sender: str) -> Lockout:
        lock_ids = self._ids("lock", sender)
        if not self._limiter.test(self._lock_item, *lock_ids):
            reset = self._limiter.get_window_stats(self._lock_item, *lock_ids).reset_time
            return Lockout(locked=True, retry_after=_seconds_until(reset))
        stats = self._limiter.get_window_stats(self._failures, *self._ids("fail", sender))
        return Lockout(locked=False, attempts_left=stats.remaining)
