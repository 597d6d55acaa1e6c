"""The fault campaign's harness (issue 11, docs/reliability.md): `signal-rag serve` as a real
process with every dependency behind a fault proxy, and the checks every scenario makes.

Built on the integration fixtures (conftest: `model`, `sim`, `redis_server`) and the serve
helpers of test_serve_process; this module adds, in one place:

- `deps`: the daemon simulator, the loopback model server (chat and, through a second
  proxy, embeddings) and a real Redis, each behind a FaultProxy (tests/integration/
  fault_proxy.py) so a scenario can kill, hang or garble any of them at any time;
- `bot`: a `serve` process over a copy of an index ingested once per session, with short
  grace periods, and what the scenarios look at: /readyz, /metrics, the operator alerts in
  its log, the durable inbox, and every byte it wrote (stdout, stderr, log and audit files)
  run through the one leak scanner (tests/leak_check.secrets_in);
- `Conversation`: questions with unique texts, and the "every accepted message answered
  exactly once" check against what the simulator was asked to send.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.testing.openai_server import FakeOpenAIServer
from agent.testing.ports import free_port
from agent.testing.signal_daemon import (
    ALICE_UUID,
    BOT_NUMBER,
    BOT_UUID,
    FakeSignalDaemon,
    direct_message,
)
from tests.integration.conftest import EXAMPLES
from tests.integration.faults.fault_proxy import RESP_GARBAGE, FaultProxy, Mode
from tests.integration.redis_server import RedisServer
from tests.integration.test_serve_process import CLI, PASSPHRASE
from tests.leak_check import secrets_in

ROOT = Path(__file__).resolve().parents[3]
PEPPER = "campaign-pepper-5b1e0c9d7a"
CHAT_KEY = "sk-test-key"
EMBED_KEY = "sk-embed-campaign-0123456789"
SECRETS = (PASSPHRASE, PEPPER, CHAT_KEY, EMBED_KEY)
GRACE_S = 3.0
"""How long a dependency may be down before its alert fires (SIGNAL_RAG_ALERTS__...)."""
SETTLE_S = 0.5
"""After the awaited replies, how long a second reply may take to show up as a duplicate
(the end of each scenario counts again, after the process has stopped)."""
STARTUP_DEADLINE_S = 180.0
"""From `serve` starting to its health server answering: imports and the output guard take
5-7 s on an idle machine, and over a minute on a 2-core machine shared with other builds."""
DEADLINE_S = 60.0
"""Upper bound for any awaited condition: generous for a loaded 2-core CI machine."""

BASE_ENV = {
    "SIGNAL_RAG_LOG_LEVEL": "INFO",
    "SIGNAL_RAG_EMBEDDINGS__PROVIDER": "openai",
    "SIGNAL_RAG_EMBEDDINGS__MODEL": "embed-test",
    "SIGNAL_RAG_EMBEDDINGS__API_KEY": EMBED_KEY,
    "SIGNAL_RAG_LLM__MODEL": "chat-test",
    "SIGNAL_RAG_LLM__API_KEY": CHAT_KEY,
    "SIGNAL_RAG_LLM__TIMEOUT": "2",
    "SIGNAL_RAG_LLM__MAX_ATTEMPTS": "2",
    "SIGNAL_RAG_LLM__RETRY_INITIAL_INTERVAL": "0.1",
    "SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY": "-1",
    "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER,
    "SIGNAL_RAG_SIGNAL__BOT_UUID": BOT_UUID,
    "SIGNAL_RAG_SIGNAL__STALE_AFTER": "4",
    "SIGNAL_RAG_ACCESS__PASSPHRASE": PASSPHRASE,
    "SIGNAL_RAG_AUDIT__PEPPER": PEPPER,
    "SIGNAL_RAG_BREAKER__FAILURE_THRESHOLD": "2",
    "SIGNAL_RAG_BREAKER__COOLDOWN": "2",
    "SIGNAL_RAG_ALERTS__COOLDOWN": "0",
    "SIGNAL_RAG_ALERTS__UNREACHABLE_MINUTES": str(GRACE_S / 60),
    "SIGNAL_RAG_ALERTS__MIN_FREE_DISK_MB": "1",
    "SIGNAL_RAG_ALERTS__SIGNAL_CLI_CHECK_INTERVAL": "1",
    "SIGNAL_RAG_ALERTS__DISK_CHECK_INTERVAL": "1",
    "SIGNAL_RAG_DEPENDENCIES__ALERT_MINUTES": str(GRACE_S / 60),
    "SIGNAL_RAG_DEPENDENCIES__PROBE_INTERVAL": "2",
    "SIGNAL_RAG_DEPENDENCIES__PROBE_TIMEOUT": "2",
    "SIGNAL_RAG_DEPENDENCIES__HOLD": "120",
}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll until `predicate()` is truthy (and return it); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


# --- dependencies -------------------------------------------------------------------------


@dataclass
class Deps:
    sim: FakeSignalDaemon
    model: FakeOpenAIServer
    redis: RedisServer
    proxies: dict[str, FaultProxy]

    def set(self, name: str, mode: Mode) -> None:
        self.proxies[name].set(mode)

    def set_all(self, mode: Mode) -> None:
        for proxy in self.proxies.values():
            proxy.set(mode)

    def env(self) -> dict[str, str]:
        p = self.proxies
        return {"SIGNAL_RAG_SIGNAL__URL": f"http://{p['signal_cli'].address}",
                "SIGNAL_RAG_LLM__BASE_URL": f"http://{p['model'].address}/v1",
                "SIGNAL_RAG_EMBEDDINGS__BASE_URL": f"http://{p['embeddings'].address}/v1",
                "SIGNAL_RAG_LIMITS__STORAGE_URL": f"redis://{p['redis'].address}"}


@pytest.fixture
def deps(sim: FakeSignalDaemon, model: FakeOpenAIServer,
         redis_server: RedisServer) -> Iterator[Deps]:
    assert sim.http_port is not None
    proxies = {"signal_cli": FaultProxy(sim.http_port),
               "model": FaultProxy(model.port),
               "embeddings": FaultProxy(model.port),
               "redis": FaultProxy(redis_server.port, garbage=RESP_GARBAGE)}
    try:
        yield Deps(sim, model, redis_server, proxies)
    finally:
        for proxy in proxies.values():
            proxy.close()


@pytest.fixture(scope="session")
def campaign_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample documents ingested once, through the loopback embedding endpoint (its
    vectors are a pure function of the text, so every test's server gives the same)."""
    data = tmp_path_factory.mktemp("campaign-template")
    (data / "no-secrets").mkdir()
    with FakeOpenAIServer(embedding_dim=32) as server:
        env = {**_clean_environ(), **BASE_ENV, "SIGNAL_RAG_DATA_DIR": str(data),
               "SIGNAL_RAG_SECRETS_DIR": str(data / "no-secrets"),
               "SIGNAL_RAG_EMBEDDINGS__BASE_URL": server.base_url}
        result = subprocess.run([*CLI, "ingest", str(EXAMPLES)], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    return data


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}


# --- the bot ------------------------------------------------------------------------------


@dataclass
class Bot:
    """One data directory and the `serve` processes started on it (normally one)."""

    env: dict[str, str]
    dir: Path
    launcher: list[str] = field(default_factory=lambda: [*CLI])
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    texts: list[str] = field(default_factory=list)
    """Message texts this test sent: the leak scan looks for them too."""
    also_scan: list[Path] = field(default_factory=list)
    """Output of other processes the scenario ran (an ingest it killed): scanned too."""

    @property
    def data_dir(self) -> Path:
        return Path(self.env["SIGNAL_RAG_DATA_DIR"])

    @property
    def output(self) -> Path:
        return self.dir / "serve.out"

    @property
    def base(self) -> str:
        return f"http://{self.env['SIGNAL_RAG_HEALTH__ADDR']}"

    def start(self) -> None:
        """Start `serve` and wait until its health server answers (or it exits)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen([*self.launcher, "serve"], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=out)
        self.starts += 1
        wait_for(lambda: not self.alive() or self.readyz() is not None,
                 "the health server answers", STARTUP_DEADLINE_S)
        self.assert_alive()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), f"serve exited with {self.proc and self.proc.returncode}: " \
                             f"{self.output.read_bytes()[-2000:]!r}"

    def stop(self) -> int:
        """SIGTERM and the exit code (SIGKILL after 30 s, which fails the check)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def readyz(self) -> tuple[int, dict[str, Any]] | None:
        try:
            response = httpx.get(f"{self.base}/readyz", timeout=5)
        except httpx.HTTPError:
            return None
        return response.status_code, response.json()

    def checks(self) -> dict[str, dict[str, Any]]:
        """The readiness checks now ({} while the health server does not answer)."""
        ready = self.readyz()
        return {} if ready is None else ready[1]["checks"]

    def ready(self) -> bool:
        ready = self.readyz()
        return ready is not None and ready[0] == 200

    def failing(self) -> set[str]:
        return {name for name, check in self.checks().items() if not check["ok"]}

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=5).text

    def dependency_up(self, check: str) -> float | None:
        """The signal_rag_dependency_up gauge for one dependency, if exposed."""
        for line in self.metrics().splitlines():
            if line.startswith("signal_rag_dependency_up{") \
                    and f'dependency="{check}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return None

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.output.read_bytes().splitlines():
            if b'"event"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                found.append(record)
        return found

    def alerts(self, status: str = "firing") -> set[str]:
        return {str(e.get("condition")) for e in self.events("operator_alert")
                if e.get("status") == status}

    def alert_count(self, condition: str, status: str = "firing") -> int:
        """How many times `condition` was logged with `status` so far."""
        return sum(1 for e in self.events("operator_alert")
                   if e.get("condition") == condition and e.get("status") == status)

    def inbox_rows(self) -> list[tuple[str, int]]:
        """(status, count) of the durable inbox, read while the bot is stopped."""
        db = sqlite3.connect(self.data_dir / "inbox.sqlite3")
        try:
            return db.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status").fetchall()
        finally:
            db.close()

    def written(self) -> dict[str, bytes]:
        """Every byte the process wrote: stdout and stderr, log files, the audit trail."""
        files = {"stdout+stderr": self.output.read_bytes()}
        files.update({path.name: path.read_bytes() for path in self.also_scan})
        for path in [*self.data_dir.glob("logs/*"), *self.data_dir.glob("audit.jsonl*")]:
            if path.is_file():
                files[str(path.relative_to(self.data_dir))] = path.read_bytes()
        return files

    def assert_no_leaks(self) -> None:
        leaks = {name: found for name, data in self.written().items()
                 if (found := secrets_in(data, [*SECRETS, *self.texts]))}
        assert not leaks, f"secrets or message texts in what serve wrote: {leaks}"

    def assert_no_crash_dump(self) -> None:
        """No Python traceback and no Rich one (whose box is titled "locals")."""
        out = self.output.read_bytes()
        assert b"Traceback" not in out and "─ locals ─".encode() not in out, out[-3000:]


@pytest.fixture
def bot(tmp_path: Path, deps: Deps, campaign_index: Path) -> Iterator[Bot]:
    """A bot over `deps` (not started). At the end, whatever the scenario did: every byte
    it wrote is scanned, and a process still running is stopped."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("index", "index.last-good"):
        if (campaign_index / name).is_dir():
            shutil.copytree(campaign_index / name, data / name)
    (tmp_path / "secrets").mkdir()
    env = {**_clean_environ(), **BASE_ENV, **deps.env(), "SIGNAL_RAG_DATA_DIR": str(data),
           "SIGNAL_RAG_SECRETS_DIR": str(tmp_path / "secrets"),
           "SIGNAL_RAG_HEALTH__ADDR": f"127.0.0.1:{free_port()}"}
    bot = Bot(env, tmp_path)
    try:
        yield bot
    finally:
        if bot.alive():
            bot.stop()
        bot.assert_no_leaks()


# --- conversations ------------------------------------------------------------------------


@dataclass
class Conversation:
    """One user (Alice) talking to the bot through the simulator."""

    sim: FakeSignalDaemon
    bot: Bot
    delivered: int = 0
    asked: int = 0
    failed_sends: int = 0
    """Sends the test scripted to fail: the simulator records them, the user saw nothing."""

    def say(self, text: str) -> None:
        self.bot.texts.append(text)
        self.sim.deliver(direct_message(text))
        self.delivered += 1

    def activate(self) -> None:
        self.say(PASSPHRASE)

    def ask(self) -> str:
        self.asked += 1
        text = f"What does exit code 3 mean, question {self.asked} {time.time_ns()}?"
        self.say(text)
        return text

    def replies(self) -> list[str]:
        """Every send to Alice the simulator took (including those scripted to fail)."""
        return [str(p.get("message")) for p in self.sim.sent("send")
                if ALICE_UUID in (p.get("recipient") or [])
                or p.get("recipient") == ALICE_UUID]

    def wait_all_answered(self, timeout: float = DEADLINE_S) -> list[str]:
        """Every delivered message got its reply; a moment later none got a second one."""
        expected = self.delivered + self.failed_sends
        wait_for(lambda: len(self.replies()) >= expected,
                 f"{expected} sends (have {len(self.replies())})", timeout)
        time.sleep(SETTLE_S)
        replies = self.replies()
        assert len(replies) == expected, (
            f"{len(replies)} sends for {self.delivered} messages and {self.failed_sends} "
            f"failed sends: {replies}")
        assert all(reply.strip() for reply in replies), f"an empty reply: {replies}"
        return replies


@pytest.fixture
def chat(deps: Deps, bot: Bot) -> Conversation:
    return Conversation(deps.sim, bot)


def finish(bot: Bot, chat: Conversation, starts: int = 1) -> None:
    """The end of every scenario: SIGTERM exits 0, no start but the test's own (no crash
    loop), no message left open in the inbox, no late duplicate, no traceback."""
    assert bot.stop() == 0
    assert bot.starts == starts and len(bot.events("serve_started")) == starts, "no restart"
    assert {status for status, _ in bot.inbox_rows()} <= {"answered", "ignored"}, (
        bot.inbox_rows())
    assert len(chat.replies()) == chat.delivered + chat.failed_sends, chat.replies()
    bot.assert_no_crash_dump()


def python_with_clock_offset(offset_file: Path) -> list[str]:
    """The `serve` launcher with the wall clock shifted (faults/shifted_clock.py)."""
    return [sys.executable, "-m", "tests.integration.faults.shifted_clock", str(offset_file)]
