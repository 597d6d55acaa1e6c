"""Rate limits shared by replicas through a real `redis-server` (ACC-5, ACC-1).

Each test starts its own server on a free loopback port with persistence off, and stops
it afterwards. `scripts/install-test-deps.sh` installs the Debian package; without the
binary the tests skip, except under CI (env `CI` set) where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guards.ratelimit import ActivationLockout, UserRateLimiter

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One `redis-server` child on loopback that can be stopped and started on its port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.answers_ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.01)

    def answers_ping(self) -> bool:
        # A raw PING: redis-py's default client retries refused connections with backoff.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        # SIGKILL: nothing is persisted, and an abrupt stop is the outage we test.
        # (SIGTERM would also do, but redis-server takes about a second to act on it.)
        self.proc.kill()
        self.proc.wait()
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = ("redis-server is not on PATH; install it with "
                   "scripts/install-test-deps.sh (Debian package redis-server)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
