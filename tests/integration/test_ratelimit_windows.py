"""Rate-limit windows expiring in real time.

`limits` reads the wall clock itself and offers no injectable clock, so window expiry is
shown here with one-second windows and a real wait, outside the fast unit suite.
"""

from __future__ import annotations

import time

from agent.ratelimit import ActivationLockout, UserRateLimiter


def test_refused_messages_do_not_count_and_a_new_window_is_told_again() -> None:
    limiter = UserRateLimiter("2/second;3/hour")
    assert limiter.hit("alice").allowed and limiter.hit("alice").allowed
    spam = [limiter.hit("alice") for _ in range(5)]
    assert [d.first_refusal for d in spam] == [True, False, False, False, False]
    assert all(d.limit == "2 per 1 second" and d.retry_after == 1 for d in spam)
    time.sleep(1.05)
    # Five refused messages spent nothing of the hourly limit: one slot is still free.
    assert limiter.hit("alice").allowed
    hourly = limiter.hit("alice")
    assert not hourly.allowed and hourly.limit == "3 per 1 hour"
    assert hourly.first_refusal  # a new refusal window, a new notice
    assert 3590 <= hourly.retry_after <= 3600
    assert not limiter.hit("alice").first_refusal


def test_lockout_ends_after_its_duration_with_a_fresh_allowance() -> None:
    lockout = ActivationLockout(failures="2/hour", lockout_seconds=1)
    lockout.record_failure("eve")
    assert lockout.record_failure("eve").locked
    time.sleep(1.05)
    state = lockout.check("eve")
    assert not state.locked and state.attempts_left == 2
