"""A real `redis-server` on a free loopback port, for tests of shared rate limits.

Persistence is off; each test gets its own server and stops it afterwards.
`scripts/install-test-deps.sh` installs the Debian package; without the binary the tests
skip, except under CI (env `CI` set) where they fail.
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

from agent.testing.ports import free_port

STARTUP_TIMEOUT_S = 10.0


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
