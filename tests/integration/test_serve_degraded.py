"""`serve` as a real process with a dependency down at start: it starts, `/readyz` says
why it is not ready, the `signal_rag_dependency_up` gauge and the alert agree, messages
wait in the inbox (or get the documented fallback) and are answered exactly once when the
dependency comes back, without a restart. A wrong configuration value still exits 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.testing.openai_server import EMBEDDINGS_PATH, FakeOpenAIServer, Reply
from agent.testing.ports import free_port
from agent.testing.signal_daemon import BOT_NUMBER, BOT_UUID, FakeSignalDaemon, direct_message
from tests.integration.conftest import EXAMPLES
from tests.integration.redis_server import RedisServer
from tests.integration.test_serve_process import (
    PASSPHRASE,
    QUESTION,
    activate,
    answers,
    start_serve,
    stop,
    wait_until,
)

CLI = [sys.executable, "-m", "agent.cli"]
PEPPER = "degraded-pepper-0123456789abcdef"
DIM = 32


@pytest.fixture
def embedding_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def openai_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample documents indexed once through the loopback endpoint (32-d vectors)."""
    data = tmp_path_factory.mktemp("openai-index")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    with FakeOpenAIServer(embedding_dim=DIM) as endpoint:
        env.update(SIGNAL_RAG_DATA_DIR=str(data), SIGNAL_RAG_SECRETS_DIR=str(data),
                   SIGNAL_RAG_EMBEDDINGS__PROVIDER="openai",
                   SIGNAL_RAG_EMBEDDINGS__MODEL="embed-test",
                   SIGNAL_RAG_EMBEDDINGS__BASE_URL=endpoint.base_url)
        ingest = subprocess.run([*CLI, "ingest", str(EXAMPLES)], env=env,
                                capture_output=True, text=True, timeout=300, check=False)
    assert ingest.returncode == 0, ingest.stderr
    return data / "index"


@pytest.fixture
def base_env(tmp_path: Path, model: FakeOpenAIServer, sim: FakeSignalDaemon,
             embedding_port: int, openai_index: Path) -> dict[str, str]:
    """Settings of a bot whose embeddings come from their own endpoint on
    `embedding_port`, where nothing listens yet; a copy of the index built through such an
    endpoint."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    shutil.copytree(openai_index, tmp_path / "data" / "index")
    values = {k: v for k, v in os.environ.items()
              if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    values.update(
        SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"), SIGNAL_RAG_SECRETS_DIR=str(secrets),
        SIGNAL_RAG_LOG_LEVEL="INFO",
        SIGNAL_RAG_EMBEDDINGS__PROVIDER="openai", SIGNAL_RAG_EMBEDDINGS__MODEL="embed-test",
        SIGNAL_RAG_EMBEDDINGS__BASE_URL=f"http://127.0.0.1:{embedding_port}/v1",
        SIGNAL_RAG_LLM__BASE_URL=model.base_url, SIGNAL_RAG_LLM__MODEL="chat-test",
        SIGNAL_RAG_LLM__API_KEY="sk-test-degraded-0123456789",
        SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY="-1",
        SIGNAL_RAG_SIGNAL__URL=sim.http_url, SIGNAL_RAG_SIGNAL__ACCOUNT=BOT_NUMBER,
        SIGNAL_RAG_SIGNAL__BOT_UUID=BOT_UUID, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE,
        SIGNAL_RAG_HEALTH__ADDR=f"127.0.0.1:{free_port()}", SIGNAL_RAG_AUDIT__PEPPER=PEPPER,
        SIGNAL_RAG_DEPENDENCIES__ALERT_MINUTES="0.02",  # 1.2 s: the alert fires in the test
        SIGNAL_RAG_DEPENDENCIES__PROBE_TIMEOUT="2",
        SIGNAL_RAG_DEPENDENCIES__PROBE_INTERVAL="2")  # also caps the backoff while down
    return values


@pytest.fixture
def serving(base_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    def launch(**extra: str) -> subprocess.Popen[bytes]:
        process = start_serve({**base_env, **extra}, tmp_path / "serve.log")
        processes.append(process)
        return process

    yield launch
    for process in processes:
        if process.poll() is None:
            stop(process)


def readiness(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    url = f"http://{env['SIGNAL_RAG_HEALTH__ADDR']}/readyz"
    try:
        response = httpx.get(url, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


def gauge(env: dict[str, str], dependency: str) -> float | None:
    text = httpx.get(f"http://{env['SIGNAL_RAG_HEALTH__ADDR']}/metrics", timeout=5,
                     trust_env=False).text
    for line in text.splitlines():
        if line.startswith("signal_rag_dependency_up") and f'dependency="{dependency}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def check(env: dict[str, str], name: str) -> dict[str, Any]:
    return readiness(env)[1].get("checks", {}).get(name, {})


def alerts(log: Path, condition: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "operator_alert" and event.get("condition") == condition \
                and event.get("status") == "firing":
            found.append(event)
    return found


def test_embedding_endpoint_down_at_start_then_back(  # noqa: PLR0917 - fixtures by name
        serving: Any, base_env: dict[str, str], sim: FakeSignalDaemon, embedding_port: int,
        model: FakeOpenAIServer, tmp_path: Path) -> None:
    process = serving()
    wait_until(lambda: check(base_env, "embeddings").get("ok") is False, timeout=120)
    status, body = readiness(base_env)
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["embeddings"]["detail"].startswith("unreachable: ")
    assert body["checks"]["index"]["ok"], "the index loaded without the endpoint"
    wait_until(lambda: gauge(base_env, "embeddings") == 0.0)
    log = tmp_path / "serve.log"
    wait_until(lambda: bool(alerts(log, "embeddings_unreachable")))

    activate(sim)  # needs no embedding: answered at once
    model.enqueue(Reply("Exit code 3 means the index is missing or damaged [1]."))
    sim.deliver(direct_message(QUESTION))
    wait_until(lambda: '"message_held"' in log.read_text())
    assert len(answers(sim)) == 1, "the question waits in the inbox"

    with FakeOpenAIServer(embedding_dim=DIM, port=embedding_port) as endpoint:
        wait_until(lambda: readiness(base_env)[0] == 200, timeout=60)
        wait_until(lambda: len(answers(sim)) == 2)
        assert gauge(base_env, "embeddings") == 1.0
        assert endpoint.count(EMBEDDINGS_PATH) >= 2  # the probe and the question
        assert process.poll() is None
        stop(process)
    sent = answers(sim)
    assert len(sent) == 2 and sent[1].startswith("Exit code 3 means"), sent
    assert "Sources:" in sent[1]
    text = log.read_text()
    assert QUESTION not in text and PASSPHRASE not in text and PEPPER not in text
    assert "Traceback" not in text


def test_model_server_down_at_start_answers_from_the_documents_then_recovers(
        serving: Any, base_env: dict[str, str], sim: FakeSignalDaemon, embedding_port: int,
        tmp_path: Path) -> None:
    model_port = free_port()
    with FakeOpenAIServer(embedding_dim=DIM, port=embedding_port):
        process = serving(SIGNAL_RAG_LLM__BASE_URL=f"http://127.0.0.1:{model_port}/v1",
                          SIGNAL_RAG_LLM__RETRY_INITIAL_INTERVAL="0.05")
        wait_until(lambda: check(base_env, "model").get("ok") is False
                   and "unreachable" in check(base_env, "model").get("detail", ""),
                   timeout=120)
        wait_until(lambda: gauge(base_env, "model") == 0.0)
        activate(sim)
        sim.deliver(direct_message(QUESTION))
        wait_until(lambda: len(answers(sim)) == 2, timeout=60)
        assert answers(sim)[1].startswith("The language model is unavailable right now")
        with FakeOpenAIServer(embedding_dim=DIM, port=model_port):
            wait_until(lambda: check(base_env, "model").get("ok") is True, timeout=60)
            wait_until(lambda: gauge(base_env, "model") == 1.0)
            assert process.poll() is None
            stop(process)
    assert len(answers(sim)) == 2
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_redis_down_at_start_keeps_the_activation_until_it_is_back(  # noqa: PLR0917
        serving: Any, base_env: dict[str, str], sim: FakeSignalDaemon, embedding_port: int,
        redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.stop()
    with FakeOpenAIServer(embedding_dim=DIM, port=embedding_port):
        process = serving(SIGNAL_RAG_LIMITS__STORAGE_URL=redis_server.uri)
        wait_until(lambda: check(base_env, "limits_storage").get("ok") is False, timeout=120)
        sim.deliver(direct_message(PASSPHRASE))
        log = tmp_path / "serve.log"
        wait_until(lambda: '"message_held"' in log.read_text())
        assert answers(sim) == []
        redis_server.start()
        wait_until(lambda: check(base_env, "limits_storage").get("ok") is True, timeout=60)
        wait_until(lambda: len(answers(sim)) == 1)
        assert answers(sim)[0].startswith("Welcome")
        wait_until(lambda: readiness(base_env)[0] == 200)
        assert process.poll() is None
        stop(process)
    assert len(answers(sim)) == 1


def test_a_wrong_value_still_exits_2(base_env: dict[str, str]) -> None:
    result = subprocess.run([*CLI, "serve"], env={
        **base_env, "SIGNAL_RAG_DEPENDENCIES__PROBE_TIMEOUT": "-1"},
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "SIGNAL_RAG_DEPENDENCIES__PROBE_TIMEOUT" in result.stderr
    assert "Traceback" not in result.stderr
