"""Per-user rate limits and the activation lockout on in-memory storage (ACC-1, ACC-5).

`limits` reads the wall clock itself, so tests that need a window to pass use one-second
windows and sleep about a second at most.
"""

from __future__ import annotations

import socket

import pytest
from limits.errors import StorageError
from limits.storage import MemoryStorage

from agent.ratelimit import ActivationLockout, UserRateLimiter


class FlakyStorage(MemoryStorage):
    """In-memory storage that can be switched "unreachable", like a Redis outage."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _gate(self) -> None:
        self.calls += 1
        if self.down:
            raise StorageError(ConnectionError("storage down"))

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self._gate()
        return super().acquire_entry(key, limit, expiry, amount)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        self._gate()
        return super().get_moving_window(key, limit, expiry)

    def clear(self, key: str) -> None:
        self._gate()
        super().clear(key)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- message rate limits -------------------------------------------------------------


def test_default_limits_allow_ten_per_minute_then_refuse() -> None:
    limiter = UserRateLimiter()
    assert limiter.rates == ["10 per 1 minute", "100 per 1 hour"]
    assert all(limiter.hit("alice").allowed for _ in range(10))
    refused = limiter.hit("alice")
    assert not refused.allowed
    assert refused.limit == "10 per 1 minute"
    assert 55 <= refused.retry_after <= 60
    assert not refused.degraded


def test_only_the_first_refusal_in_a_window_is_flagged() -> None:
    limiter = UserRateLimiter("2/minute")
    limiter.hit("alice")
    limiter.hit("alice")
    first, second, third = (limiter.hit("alice") for _ in range(3))
    assert first.first_refusal and not first.allowed
    assert not second.first_refusal and not second.allowed
    assert not third.first_refusal
    assert second.retry_after <= first.retry_after


def test_users_are_independent() -> None:
    limiter = UserRateLimiter("2/minute")
    assert limiter.hit("alice").allowed and limiter.hit("alice").allowed
    assert not limiter.hit("alice").allowed
    assert limiter.hit("bob").allowed
    bob_refused = [limiter.hit("bob"), limiter.hit("bob")][1]
    assert not bob_refused.allowed and bob_refused.first_refusal  # bob is told, too


def test_rates_are_configurable_and_validated() -> None:
    assert UserRateLimiter("3/second;7/hour").rates == ["3 per 1 second", "7 per 1 hour"]
    assert UserRateLimiter(["7/hour", "3/second"]).rates == ["3 per 1 second", "7 per 1 hour"]
    with pytest.raises(ValueError, match="rate"):
        UserRateLimiter("ten a minute")
    with pytest.raises(ValueError, match="at least one"):
        UserRateLimiter([])


def test_forget_clears_a_users_counters() -> None:
    limiter = UserRateLimiter("1/minute")
    limiter.hit("alice")
    assert not limiter.hit("alice").allowed
    assert limiter.forget("alice")
    assert limiter.hit("alice").allowed
    assert limiter.hit("alice").first_refusal


# --- failure path: fail over to a local limiter ---------------------------------------


def test_unreachable_redis_fails_over_to_local_limits() -> None:
    limiter = UserRateLimiter("2/minute", f"redis://127.0.0.1:{closed_port()}", timeout=0.2)
    first = limiter.hit("alice")
    assert first.allowed and first.degraded
    assert limiter.degraded
    assert limiter.hit("alice").allowed
    refused = limiter.hit("alice")  # the local fallback still enforces the limit
    assert not refused.allowed and refused.degraded and refused.first_refusal
    assert not limiter.forget("alice")


def test_failover_probes_the_shared_storage_again_and_recovers() -> None:
    storage, clock = FlakyStorage(), FakeClock()
    limiter = UserRateLimiter("5/minute", storage, probe_interval=30.0, clock=clock)
    assert limiter.hit("alice") == limiter.hit("bob")  # both allowed, not degraded
    storage.down = True
    assert limiter.hit("alice").degraded
    calls = storage.calls
    clock.now += 29.0
    assert limiter.hit("alice").degraded
    assert storage.calls == calls  # within the probe interval the storage is not touched
    clock.now += 1.0
    assert limiter.hit("alice").degraded  # probed, still down
    assert storage.calls == calls + 1
    storage.down = False
    clock.now += 30.0
    back = limiter.hit("alice")
    assert back.allowed and not back.degraded and not limiter.degraded
    # The shared storage kept its own count: 1 before the outage + 1 now.
    assert [limiter.hit("alice").allowed for _ in range(4)] == [True, True, True, False]


def test_an_error_in_the_local_fallback_propagates() -> None:
    storage = FlakyStorage()
    limiter = UserRateLimiter("5/minute", storage)
    storage.down = True

    def broken(*_: object, **__: object) -> bool:
        raise RuntimeError("fallback broke")

    limiter.hit("alice")
    assert limiter._fallback is not None
    limiter._fallback.test = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="fallback broke"):
        limiter.hit("alice")


# --- activation lockout (ACC-1) -------------------------------------------------------


def test_lockout_after_five_wrong_attempts() -> None:
    lockout = ActivationLockout()
    assert lockout.check("eve").attempts_left == 5
    results = [lockout.record_failure("eve") for _ in range(5)]
    assert [r.locked for r in results] == [False, False, False, False, True]
    assert [r.attempts_left for r in results[:4]] == [4, 3, 2, 1]
    assert results[4].retry_after == 3600
    state = lockout.check("eve")
    assert state.locked and 3595 <= state.retry_after <= 3600 and not state.degraded
    assert lockout.record_failure("eve").locked  # attempts while locked change nothing
    assert not lockout.check("mallory").locked  # other senders are unaffected


def test_correct_passphrase_resets_the_count() -> None:
    lockout = ActivationLockout()
    for _ in range(4):
        lockout.record_failure("alice")
    assert lockout.check("alice").attempts_left == 1
    assert lockout.record_success("alice")
    assert lockout.check("alice").attempts_left == 5
    assert not any(lockout.record_failure("alice").locked for _ in range(4))


def test_lockout_fails_closed_when_storage_is_unreachable() -> None:
    lockout = ActivationLockout(f"redis://127.0.0.1:{closed_port()}", timeout=0.2)
    for result in (lockout.check("alice"), lockout.record_failure("alice")):
        assert result.locked and result.degraded
    assert not lockout.record_success("alice")


def test_lockout_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="one rate"):
        ActivationLockout(failures="5/hour;10/day")
    with pytest.raises(ValueError, match="lockout_seconds"):
        ActivationLockout(lockout_seconds=0)
