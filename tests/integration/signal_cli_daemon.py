"""Run the real signal-cli daemon on loopback for integration tests.

The binary and its Java runtime come from `scripts/fetch-signal-cli.sh` (`make signal-cli`),
which writes `$SIGNAL_RAG_CACHE/signal-cli.env` (default `~/.cache/signal-rag`). Each daemon
gets its own `--config` directory, so no account exists and it runs in multi-account mode;
it is started in its own process group and always stopped on exit (SIGTERM, then SIGKILL).

Written here rather than taken from a library: no maintained pytest plugin manages a
JVM daemon with a readiness probe and same-port restarts.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import pytest

SIGNAL_CLI_VERSION = "0.13.19"
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
LOOPBACK = "127.0.0.1"

ReceiveMode = Literal["on-start", "on-connection", "manual"]


class SignalCliMissingError(RuntimeError):
    """The fetched signal-cli (or its Java runtime) is not where the env file says."""


class DaemonStartError(RuntimeError):
    """The daemon exited or did not become ready before the deadline."""


@dataclass(frozen=True)
class SignalCliInstall:
    """Where the fetch script put the launcher and the Java runtime it needs."""

    bin: Path
    java_home: Path
    version: str


def cache_dir() -> Path:
    """Return the cache directory, with the same default as scripts/fetch-signal-cli.sh."""
    env = os.environ.get("SIGNAL_RAG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "signal-rag"


def env_file_path() -> Path:
    return cache_dir() / "signal-cli.env"


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # The script writes KEY='value'; shlex undoes the shell quoting.
        key, sep, value = "".join(shlex.split(line)).partition("=")
        if sep:
            values[key] = value
    return values


def find_signal_cli() -> SignalCliInstall:
    """Locate the fetched signal-cli, or raise SignalCliMissingError saying how to get it."""
    path = env_file_path()
    hint = "run `make signal-cli` (scripts/fetch-signal-cli.sh) first"
    if not path.is_file():
        raise SignalCliMissingError(f"signal-cli is not fetched: {path} does not exist; {hint}")
    values = _read_env_file(path)
    try:
        install = SignalCliInstall(
            bin=Path(values["SIGNAL_CLI_BIN"]),
            java_home=Path(values["JAVA_HOME"]),
            version=values.get("SIGNAL_CLI_VERSION", ""),
        )
    except KeyError as exc:
        raise SignalCliMissingError(f"{path} lacks {exc.args[0]}; {hint}") from exc
    if not os.access(install.bin, os.X_OK):
        raise SignalCliMissingError(f"{install.bin} is missing or not executable; {hint}")
    if not os.access(install.java_home / "bin" / "java", os.X_OK):
        raise SignalCliMissingError(f"no Java runtime in {install.java_home}; {hint}")
    if install.version != SIGNAL_CLI_VERSION:
        raise SignalCliMissingError(
            f"{path} has signal-cli {install.version!r}, tests expect {SIGNAL_CLI_VERSION}; {hint}"
        )
    return install


def require_signal_cli() -> SignalCliInstall:
    """For fixtures: fail under CI (a missing binary must not pass as a skip), else skip."""
    try:
        return find_signal_cli()
    except SignalCliMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Distinct ports the kernel just handed out; racy in theory, fine on a test machine."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass
class SignalCliDaemon:
    """One `signal-cli daemon` process with fixed ports that survive restarts."""

    install: SignalCliInstall
    config_dir: Path
    log_path: Path
    host: str = LOOPBACK
    http_port: int | None = None
    tcp_port: int | None = None
    receive_mode: ReceiveMode | None = None
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = STARTUP_TIMEOUT_S
    startup_seconds: float = field(default=0.0, init=False)
    """Seconds from spawn to ready, of the latest start."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        if self.http_port is None:
            raise RuntimeError("daemon was started without --http")
        return f"http://{self.host}:{self.http_port}"

    @property
    def rpc_url(self) -> str:
        return f"{self.http_url}/api/v1/rpc"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("daemon is not running")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def command(self) -> list[str]:
        cmd = [str(self.install.bin), "--config", str(self.config_dir), "daemon"]
        if self.http_port is not None:
            cmd.append(f"--http={self.host}:{self.http_port}")
        if self.tcp_port is not None:
            cmd.append(f"--tcp={self.host}:{self.tcp_port}")
        if self.receive_mode is not None:
            cmd.append(f"--receive-mode={self.receive_mode}")
        cmd.extend(self.extra_args)
        return cmd

    def start(self) -> None:
        """Spawn the daemon and block until every endpoint answers (or raise)."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("daemon is already running")
        if self.http_port is None and self.tcp_port is None:
            raise ValueError("give http_port and/or tcp_port")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, JAVA_HOME=str(self.install.java_home))
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"--- start: {shlex.join(self.command())}\n".encode())
            log.flush()
            # Own session = own process group: a kill reaches the JVM (the launcher execs
            # java, so the group is just that process) and never the test runner.
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready(started + self.startup_timeout)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        pending_http = self.http_port is not None
        pending_tcp = self.tcp_port is not None
        with httpx.Client(timeout=1.0) as client:
            while pending_http or pending_tcp:
                code = self.returncode
                if code is not None:
                    raise DaemonStartError(f"signal-cli exited with {code}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise DaemonStartError(
                        f"signal-cli not ready after {self.startup_timeout:.0f} s:\n"
                        f"{self.log_tail()}"
                    )
                if pending_http:
                    with contextlib.suppress(httpx.TransportError):
                        pending_http = (
                            client.get(f"{self.http_url}/api/v1/check").status_code != 200
                        )
                if pending_tcp and not pending_http:
                    assert self.tcp_port is not None
                    with contextlib.suppress(OSError):
                        socket.create_connection((self.host, self.tcp_port), timeout=1.0).close()
                        pending_tcp = False
                if pending_http or pending_tcp:
                    time.sleep(0.1)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap; the ports are free again once this returns."""
        self._signal_group(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait()

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL if still alive after `grace` seconds; returns the exit code."""
        if self._proc is None:
            return None
        self._signal_group(signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        return self._proc.returncode

    def restart(self, *, hard: bool = True) -> None:
        """Kill -9 (or stop gracefully if not `hard`) and start again on the same ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def rss_kib(self) -> int:
        """Resident memory of the JVM from /proc (Linux only)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def signal_cli_daemon(
    *,
    http: bool = True,
    tcp: bool = False,
    receive_mode: ReceiveMode | None = None,
    workdir: Path | None = None,
    extra_args: tuple[str, ...] = (),
    startup_timeout: float = STARTUP_TIMEOUT_S,
    install: SignalCliInstall | None = None,
) -> Iterator[SignalCliDaemon]:
    """Start `signal-cli --config DIR daemon --http/--tcp 127.0.0.1:PORT` and stop it after.

    Ports are picked free once and kept for `restart()`. `workdir` holds the config dir and
    `daemon.log`; a temporary directory is used (and removed) when it is not given.
    """
    resolved = install if install is not None else require_signal_cli()
    with contextlib.ExitStack() as stack:
        base = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory("signal-cli")))
        http_port, tcp_port = free_ports(2)
        daemon = SignalCliDaemon(
            install=resolved,
            config_dir=base / "config",
            log_path=base / "daemon.log",
            http_port=http_port if http else None,
            tcp_port=tcp_port if tcp else None,
            receive_mode=receive_mode,
            extra_args=extra_args,
            startup_timeout=startup_timeout,
        )
        stack.callback(daemon.stop)
        daemon.start()
        yield daemon
