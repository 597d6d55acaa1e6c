"""Rate limits shared by replicas through a real `redis-server` (ACC-5, ACC-1).

Each test starts its own server on a free loopback port with persistence off, and stops
it afterwards. `scripts/install-test-deps.sh` installs the Debian package; without the
binary the tests skip, except under CI (env `CI` set) where they fail.
"""

from __future__ import annotations

import time

import pytest

from agent.ratelimit import ActivationLockout, UserRateLimiter
from tests.integration.redis_server import RedisServer

pytestmark = pytest.mark.slow


def test_two_replicas_share_one_limit(redis_server: RedisServer) -> None:
    replica_a = UserRateLimiter("5/minute;50/hour", redis_server.uri)
    replica_b = UserRateLimiter("5/minute;50/hour", redis_server.uri)
    allowed = [replica.hit("alice").allowed
               for replica in (replica_a, replica_b, replica_a, replica_b, replica_a)]
    assert allowed == [True] * 5
    refused_b = replica_b.hit("alice")
    refused_a = replica_a.hit("alice")
    assert not refused_b.allowed and not refused_a.allowed
    # One notice across both replicas: the "already told" mark is in Redis too.
    assert refused_b.first_refusal and not refused_a.first_refusal
    assert 55 <= refused_a.retry_after <= 60
    assert not (refused_a.degraded or refused_b.degraded)
    assert replica_b.hit("bob").allowed


def test_notice_is_given_once_when_replicas_race(redis_server: RedisServer) -> None:
    replicas = [UserRateLimiter("1/minute", redis_server.uri) for _ in range(4)]
    assert replicas[0].hit("alice").allowed
    decisions = [replica.hit("alice") for replica in replicas for _ in range(3)]
    assert not any(d.allowed for d in decisions)
    assert sum(d.first_refusal for d in decisions) == 1


def test_a_new_window_is_told_again_across_replicas(redis_server: RedisServer) -> None:
    replica_a = UserRateLimiter("1/second", redis_server.uri)
    replica_b = UserRateLimiter("1/second", redis_server.uri)
    assert replica_a.hit("alice").allowed
    assert replica_b.hit("alice").first_refusal
    assert not replica_a.hit("alice").first_refusal
    time.sleep(1.05)
    assert replica_a.hit("alice").allowed
    assert replica_b.hit("alice").first_refusal


def test_activation_lockout_is_shared(redis_server: RedisServer) -> None:
    replica_a = ActivationLockout(redis_server.uri)
    replica_b = ActivationLockout(redis_server.uri)
    for replica in (replica_a, replica_b, replica_a, replica_b):
        assert not replica.record_failure("eve").locked
    assert replica_a.record_failure("eve").locked  # the fifth, wherever it lands
    state = replica_b.check("eve")
    assert state.locked and 3595 <= state.retry_after <= 3600
    assert replica_b.record_success("eve")
    assert not replica_a.check("eve").locked


def test_redis_stopped_mid_way_fails_over_then_recovers(redis_server: RedisServer) -> None:
    now = [0.0]
    replica_a = UserRateLimiter("3/minute", redis_server.uri, timeout=0.2,
                                probe_interval=5.0, clock=lambda: now[0])
    replica_b = UserRateLimiter("3/minute", redis_server.uri, timeout=0.2,
                                probe_interval=5.0, clock=lambda: now[0])
    lockout = ActivationLockout(redis_server.uri, timeout=0.2)
    assert replica_a.hit("alice").allowed and replica_b.hit("alice").allowed

    redis_server.stop()
    started = time.monotonic()
    # Rate limits fail over: each replica now counts on its own, and says so.
    local = [replica_a.hit("alice") for _ in range(4)]
    assert [d.allowed for d in local] == [True, True, True, False]
    assert all(d.degraded for d in local) and local[3].first_refusal
    assert replica_a.degraded
    assert replica_b.hit("alice").allowed and replica_b.degraded
    # The activation lockout fails closed.
    assert lockout.check("eve").locked and lockout.check("eve").degraded
    assert time.monotonic() - started < 2.0  # refused connections cost no retry loop

    redis_server.start()  # same port, empty (no persistence)
    assert replica_a.hit("alice").degraded  # within the probe interval: still local
    now[0] += 5.0
    back = replica_a.hit("alice")
    assert back.allowed and not back.degraded and not replica_a.degraded
    assert not lockout.check("eve").locked
