"""The systemd units' commands, run as plain processes (no systemd here).

Each test takes the command lines and environment straight from deploy/systemd/*.service
and does what systemd would: Environment= then EnvironmentFile= (the file wins),
specifiers %S/%C/%d pointed at temporary folders, LoadCredential= copied into the
credentials folder (tests/unit/project/test_deploy_manifests.load_credentials), `${VAR}` and
`$VAR` expanded, and the install paths of docs/deployment.md mapped to this checkout:
/opt/signal-rag/bin -> this venv, /opt/signal-rag/libexec/check_config.py ->
docker/check_config.py, /opt/signal-cli and JAVA_HOME -> the fetched signal-cli (`make
signal-cli`). The bot runs against the daemon simulator and the fake model server; the
signal-cli unit runs the real daemon. The sandbox directives are not exercised here
(tests/unit/project/test_deploy_manifests.py checks them statically and with systemd-analyze).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.testing.openai_server import FakeOpenAIServer, Reply
from agent.testing.ports import free_port
from agent.testing.signal_daemon import (
    BOT_NUMBER,
    BOT_UUID,
    FakeSignalDaemon,
    direct_message,
)
from tests.integration.conftest import EXAMPLES, ROOT
from tests.integration.signal_cli_daemon import require_signal_cli
from tests.integration.test_serve_process import wait_until as serve_wait_until
from tests.unit.project.test_deploy_manifests import (
    BOT_UNIT,
    CLI_UNIT,
    ENV_EXAMPLE,
    INGEST_UNIT,
    Unit,
    env_file,
    load_credentials,
    parse_unit,
    unit_environment,
    value,
    values,
)

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
PASSPHRASE = "a long private passphrase"
PEPPER = "0123456789abcdef" * 4
QUESTION = "What does exit code 3 mean?"


wait_until = functools.partial(serve_wait_until, timeout=60.0)


class Host:
    """A stand-in for the machine the units are installed on: its folders, in tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "var" / "lib"
        self.cache = root / "var" / "cache"
        self.store = root / "store"  # holds /etc/signal-rag/credentials, as on the host
        self.paths: dict[str, str] = {
            "/opt/signal-rag/bin/": f"{VENV_BIN}/",
            "/opt/signal-rag/libexec/check_config.py": str(ROOT / "docker" / "check_config.py"),
        }
        for folder in (self.state, self.cache, self.store):
            folder.mkdir(parents=True, exist_ok=True)

    def credentials(self, **files: str) -> None:
        folder = self.store / "etc" / "signal-rag" / "credentials"
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(content + "\n")

    def _specifiers(self, text: str, unit: Path) -> str:
        return (text.replace("%S", str(self.state)).replace("%C", str(self.cache))
                .replace("%d", str(self.credentials_dir(unit))))

    def credentials_dir(self, unit: Path) -> Path:
        return self.root / "run" / "credentials" / unit.name

    def environment(self, unit_path: Path, unit: Unit, env_path: Path) -> dict[str, str]:
        """systemd's order: Environment= lines, then the EnvironmentFile= (which wins)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
        for name, val in unit_environment(unit).items():
            env[name] = self._map(self._specifiers(val, unit_path))
        assert value(unit, "Service", "EnvironmentFile") == "/etc/signal-rag/signal-rag.env"
        env.update(env_file(env_path))
        return env

    def prepare(self, unit_path: Path, unit: Unit) -> None:
        """StateDirectory=, CacheDirectory= and LoadCredential=, as systemd sets them up."""
        for key, base in (("StateDirectory", self.state), ("CacheDirectory", self.cache)):
            for name in values(unit, "Service", key):
                (base / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        load_credentials(unit, self.store, self.credentials_dir(unit_path))

    def _map(self, text: str) -> str:
        for installed, here in self.paths.items():
            text = text.replace(installed, here)
        return text

    def command(self, line: str, env: dict[str, str], unit: Path) -> list[str]:
        """An Exec line as argv: paths mapped, specifiers and variables expanded."""
        words = []
        for word in shlex.split(self._specifiers(self._map(line), unit)):
            whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
            if whole:  # $VAR: split at whitespace, zero or more words
                words.extend(env.get(whole.group(1), "").split())
                continue
            words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                                lambda m: env.get(m.group(1), ""), word))
        return words


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "host")


@pytest.fixture
def settings_file(tmp_path: Path, model: FakeOpenAIServer, sim: FakeSignalDaemon) -> Path:
    """/etc/signal-rag/signal-rag.env: the shipped example, edited as an operator would
    (this test's daemon, model endpoints and a free health port)."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    edits = {
        "SIGNAL_RAG_SIGNAL__URL": sim.http_url, "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER,
        "SIGNAL_RAG_SIGNAL__BOT_UUID": BOT_UUID,
        "SIGNAL_RAG_EMBEDDINGS__PROVIDER": "openai", "SIGNAL_RAG_EMBEDDINGS__MODEL": "embed-test",
        "SIGNAL_RAG_LLM__BASE_URL": model.base_url, "SIGNAL_RAG_LLM__MODEL": "chat-test",
        "SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY": "-1",
        "SIGNAL_RAG_HEALTH__ADDR": f"127.0.0.1:{free_port()}",
        "SIGNAL_RAG_DOCUMENTS_DIR": str(EXAMPLES),
    }
    kept = [line for line in lines
            if line.startswith("#") or line.partition("=")[0] not in edits]
    path = tmp_path / "signal-rag.env"
    path.write_text("\n".join(kept + [f"{k}={v}" for k, v in edits.items()]) + "\n")
    return path


def run_unit_commands(host: Host, unit_path: Path, env_path: Path,
                      key: str) -> list[subprocess.CompletedProcess[str]]:
    unit = parse_unit(unit_path)
    host.prepare(unit_path, unit)
    env = host.environment(unit_path, unit, env_path)
    results = []
    for line in values(unit, "Service", key):
        results.append(subprocess.run(host.command(line, env, unit_path), env=env,
                                      capture_output=True, text=True, timeout=300,
                                      check=False))
    return results


def test_ingest_then_serve_as_the_units_run_them(
        host: Host, settings_file: Path, sim: FakeSignalDaemon, model: FakeOpenAIServer,
        tmp_path: Path) -> None:
    host.credentials(audit__pepper=PEPPER, access__passphrase=PASSPHRASE,
                     llm__api_key="sk-test")
    # signal-rag-ingest.service: validation, then ingest into the state directory
    [check] = run_unit_commands(host, INGEST_UNIT, settings_file, "ExecStartPre")
    assert check.returncode == 0, check.stderr
    [ingest] = run_unit_commands(host, INGEST_UNIT, settings_file, "ExecStart")
    assert ingest.returncode == 0, ingest.stderr
    data_dir = host.state / "signal-rag"
    assert (data_dir / "index" / "manifest.json").is_file()
    # the rebuild the guide runs with SIGNAL_RAG_INGEST_OPTIONS=--rebuild
    unit = parse_unit(INGEST_UNIT)
    env = host.environment(INGEST_UNIT, unit, settings_file)
    assert "--rebuild" not in host.command(value(unit, "Service", "ExecStart"), env,
                                           INGEST_UNIT)
    env["SIGNAL_RAG_INGEST_OPTIONS"] = "--rebuild"
    argv = host.command(value(unit, "Service", "ExecStart"), env, INGEST_UNIT)
    assert argv[1:] == ["ingest", "--rebuild", str(EXAMPLES)]
    rebuilt = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                             check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr

    # signal-rag.service: ExecStartPre, then ExecStart until SIGTERM
    [check] = run_unit_commands(host, BOT_UNIT, settings_file, "ExecStartPre")
    assert check.returncode == 0, check.stderr
    unit = parse_unit(BOT_UNIT)
    env = host.environment(BOT_UNIT, unit, settings_file)
    assert env["SIGNAL_RAG_SECRETS_DIR"] == str(host.credentials_dir(BOT_UNIT))
    assert env["SIGNAL_RAG_DATA_DIR"] == str(data_dir)
    argv = host.command(value(unit, "Service", "ExecStart"), env, BOT_UNIT)
    assert argv == [str(VENV_BIN / "signal-rag"), "serve"]
    log = tmp_path / "serve.log"
    health = [str(VENV_BIN / "signal-rag"), "health"]

    def ready() -> bool:
        return subprocess.run(health, env=env, capture_output=True, timeout=60,
                              check=False).returncode == 0

    with log.open("ab") as handle:
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_until(ready)
        sim.deliver(direct_message(PASSPHRASE))
        wait_until(lambda: sim.count("send") >= 1)
        model.default = Reply("Exit code 3 means the index is missing or damaged [1].")
        sim.deliver(direct_message(QUESTION))
        wait_until(lambda: sim.count("send") >= 2)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=int(value(unit, "Service", "TimeoutStopSec")))
        assert code == 0, "serve drains on SIGTERM and exits 0"
        assert time.monotonic() - started < 30
    finally:
        if process.poll() is None:
            process.kill()
    assert str(sim.sent("send")[1]["message"]).startswith("Exit code 3 means")
    assert (data_dir / "inbox.sqlite3").is_file(), "state lives in the StateDirectory"
    assert not (data_dir / "logs").exists(), "the journal keeps the log, not a file"
    text = log.read_text()
    for secret in (PASSPHRASE, PEPPER, "sk-test", QUESTION, BOT_NUMBER):
        assert secret not in text


def test_a_missing_credential_stops_the_unit_before_serve(
        host: Host, settings_file: Path) -> None:
    host.credentials(access__passphrase=PASSPHRASE)  # no audit pepper
    [check] = run_unit_commands(host, BOT_UNIT, settings_file, "ExecStartPre")
    assert check.returncode == 2, "RestartPreventExitStatus=2: no restart loop"
    assert check.stdout == ""
    [line] = check.stderr.splitlines()
    assert line.startswith("config error: ") and "SIGNAL_RAG_AUDIT__PEPPER" in line
    assert PASSPHRASE not in check.stderr
    unit = parse_unit(BOT_UNIT)
    assert value(unit, "Service", "RestartPreventExitStatus") == str(check.returncode)


def test_signal_cli_unit_starts_the_daemon_it_describes(host: Host, tmp_path: Path) -> None:
    install = require_signal_cli()
    unit = parse_unit(CLI_UNIT)
    host.paths["/opt/signal-cli/"] = f"{install.bin.parent.parent}/"
    host.prepare(CLI_UNIT, unit)
    env = dict(os.environ)
    for name, val in unit_environment(unit).items():
        env[name] = val
    assert env["JAVA_HOME"] == "/opt/java/jre-25"
    env["JAVA_HOME"] = str(install.java_home)  # the Java 25 runtime `make signal-cli` fetched
    port = free_port()
    line = value(unit, "Service", "ExecStart").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    argv = host.command(line, env, CLI_UNIT)
    assert argv[0] == str(install.bin)
    state = host.state / value(unit, "Service", "StateDirectory")
    assert argv[1:3] == ["--config", str(state)]
    log = tmp_path / "signal-cli.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base}/api/v1/check", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=90)
        reply = httpx.post(f"{base}/api/v1/rpc", timeout=10,
                           json={"jsonrpc": "2.0", "method": "version", "id": 1}).json()
        assert reply["result"]["version"] == "0.13.19"
        # the launcher execs java with the unit's JAVA_OPTS
        jvm = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-Xmx512m" in jvm and env["JAVA_OPTS"] == "-Xmx512m"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=int(value(unit, "Service", "TimeoutStopSec")))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    clean = {0, *map(int, value(unit, "Service", "SuccessExitStatus").split())}
    assert code in clean, f"exit {code} would mark the unit failed"
    assert "127.0.0.1" in log.read_text(), "listens on loopback"
