"""`signal-rag serve` as a real process against the daemon simulator and the fake model
server: SIGTERM drains and exits 0; `kill -9` mid-answer loses nothing and sends once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.testing.openai_server import CHAT_PATH, FakeOpenAIServer, Reply, Slow
from agent.testing.ports import free_port
from agent.testing.signal_daemon import (
    BOB_UUID as OTHER_UUID,
)
from agent.testing.signal_daemon import (
    BOT_NUMBER,
    BOT_UUID,
    FakeSignalDaemon,
    direct_message,
)
from tests.integration.conftest import EXAMPLES

CLI = [sys.executable, "-m", "agent.cli"]
PASSPHRASE = "let me in please"
QUESTION = "What does exit code 3 mean?"


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def env(tmp_path: Path, model: FakeOpenAIServer, sim: FakeSignalDaemon) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    values = {k: v for k, v in os.environ.items()
              if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    values.update(
        SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"), SIGNAL_RAG_SECRETS_DIR=str(secrets),
        SIGNAL_RAG_LOG_LEVEL="INFO",
        SIGNAL_RAG_EMBEDDINGS__PROVIDER="openai", SIGNAL_RAG_EMBEDDINGS__MODEL="embed-test",
        SIGNAL_RAG_LLM__BASE_URL=model.base_url, SIGNAL_RAG_LLM__MODEL="chat-test",
        SIGNAL_RAG_LLM__API_KEY="sk-test", SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY="-1",
        SIGNAL_RAG_SIGNAL__URL=sim.http_url, SIGNAL_RAG_SIGNAL__ACCOUNT=BOT_NUMBER,
        SIGNAL_RAG_SIGNAL__BOT_UUID=BOT_UUID, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE,
        SIGNAL_RAG_HEALTH__ADDR=f"127.0.0.1:{free_port()}",
        SIGNAL_RAG_AUDIT__PEPPER="test-pepper-0123456789abcdef")
    ingest = subprocess.run([*CLI, "ingest", str(EXAMPLES)], env=values, capture_output=True,
                            text=True, timeout=120, check=False)
    assert ingest.returncode == 0, ingest.stderr
    return values


def start_serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen([*CLI, "serve"], env=env, stdout=handle,
                                stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited within 30 s (test clean-up)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def answers(sim: FakeSignalDaemon) -> list[str]:
    return [str(p["message"]) for p in sim.sent("send")]


def activate(sim: FakeSignalDaemon) -> None:
    sim.deliver(direct_message(PASSPHRASE))
    wait_until(lambda: sim.count("send") >= 1)


def test_sigterm_finishes_the_answer_in_flight_and_exits_0(
        env: dict[str, str], sim: FakeSignalDaemon, model: FakeOpenAIServer,
        tmp_path: Path) -> None:
    process = start_serve(env, tmp_path / "serve.log")
    try:
        activate(sim)
        model.enqueue(Slow(2.0, "Exit code 3 means the index is missing or damaged [1]."))
        sim.deliver(direct_message(QUESTION))
        wait_until(lambda: model.count(CHAT_PATH) >= 1)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
    finally:
        if process.poll() is None:
            process.kill()
    sent = answers(sim)
    assert len(sent) == 2 and sent[1].startswith("Exit code 3 means"), sent
    log = (tmp_path / "serve.log").read_text()
    assert QUESTION not in log and PASSPHRASE not in log, "no message text in logs"


def test_kill_9_mid_answer_then_restart_sends_exactly_one_answer(
        env: dict[str, str], sim: FakeSignalDaemon, model: FakeOpenAIServer,
        tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    process = start_serve(env, log)
    try:
        activate(sim)
        model.enqueue(Slow(30.0, "too late"))
        sim.deliver(direct_message(QUESTION))
        wait_until(lambda: model.count(CHAT_PATH) >= 1)
        process.kill()  # SIGKILL while the model is answering
        process.wait(timeout=10)
        assert len(answers(sim)) == 1
        model.default = Reply("Exit code 3 means the index is missing or damaged [1].")
        process = start_serve(env, log)
        wait_until(lambda: len(answers(sim)) >= 2)
        # Nothing more may follow: a later message's reply is the event that proves it.
        # The restarted process re-claims its inbox before it receives, and one user's
        # messages are answered in order, so a second copy would be sent before this reply.
        sim.deliver(direct_message("/help"))
        wait_until(lambda: len(answers(sim)) >= 3)
        sent = answers(sim)
        assert len(sent) == 3, sent
        assert sent[1].startswith("Exit code 3 means")
        assert not sent[2].startswith("Exit code 3 means"), sent
    finally:
        stop(process)


def health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "health"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_health_readiness_and_metrics_of_a_running_bot(
        env: dict[str, str], sim: FakeSignalDaemon, model: FakeOpenAIServer,
        tmp_path: Path) -> None:
    import json

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    log = tmp_path / "serve.log"
    assert health(env).returncode == 1, "nothing listens yet: not ready"
    process = start_serve(env, log)
    base = f"http://{env['SIGNAL_RAG_HEALTH__ADDR']}"
    try:
        wait_until(lambda: health(env).returncode == 0)
        # The container's health check does not see the secrets the entrypoint hands the
        # bot: settings it cannot validate must not make a ready bot look unhealthy.
        assert health({**env, "SIGNAL_RAG_MAX_INPUT_CHARS": "0"}).returncode == 0
        ready = json.loads(health(env).stdout)
        assert ready["status"] == "ready"
        # `embeddings`: the openai provider's endpoint is a probed dependency (no Redis here)
        assert set(ready["checks"]) == {"signal_cli", "index", "model", "embeddings", "data_dir",
                                        "inbox"}
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        activate(sim)
        model.default = Reply("Exit code 3 means the index is missing or damaged [1].")
        sim.deliver(direct_message(QUESTION))
        sim.deliver(direct_message("a stranger's message", source_uuid=OTHER_UUID,
                                   source_number=None))
        wait_until(lambda: len(answers(sim)) >= 2)
        samples = {}

        def scraped() -> bool:
            page = httpx.get(f"{base}/metrics").text
            samples.clear()
            for family in text_string_to_metric_families(page):
                for sample in family.samples:
                    labels = {k: v for k, v in sample.labels.items()
                              if not k.startswith("otel_")}
                    key = (sample.name, tuple(sorted(labels.items())))
                    samples[key] = sample.value
            return samples.get(("signal_rag_messages_refused_total",
                                (("reason", "not_activated"),)), 0) >= 1

        wait_until(scraped)
        assert samples[("signal_rag_messages_received_total", (("chat", "dm"),))] == 3
        assert samples[("signal_rag_messages_answered_total", (("route", "answered"),))] == 1
        assert samples[("signal_rag_model_calls_total",
                        (("model", "chat-test"), ("outcome", "ok")))] == 1
        assert samples[("signal_rag_model_tokens_total",
                        (("direction", "in"), ("model", "chat-test")))] > 0
        assert samples[("signal_rag_reply_latency_seconds_count", ())] == 2
        assert samples[("signal_rag_retrieval_latency_seconds_count", ())] == 1
        wait_until(lambda: httpx.get(f"{base}/metrics").text.count(
            "signal_rag_index_chunks") > 0)
        sim.stop_listening()  # the daemon goes away: not ready, and `health` says why
        wait_until(lambda: health(env).returncode == 1)
        body = json.loads(health(env).stdout)
        assert body["checks"]["signal_cli"]["ok"] is False
        assert body["checks"]["index"]["ok"] is True
        sim.resume()
        wait_until(lambda: health(env).returncode == 0)
    finally:
        stop(process)
    text = log.read_text()
    assert QUESTION not in text and PASSPHRASE not in text


def test_a_taken_health_port_is_a_clear_configuration_error(
        env: dict[str, str], tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**env, "SIGNAL_RAG_HEALTH__ADDR": f"127.0.0.1:{port}"}
        result = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True,
                                timeout=120, check=False)
    assert result.returncode == 2
    assert "SIGNAL_RAG_HEALTH__ADDR" in result.stderr and "cannot listen" in result.stderr


def test_readyz_follows_a_damaged_index_and_a_new_ingest_without_restart(
        env: dict[str, str], sim: FakeSignalDaemon, tmp_path: Path) -> None:
    """RES-4 + OBS-5 through the real process: damage → 503 (and the bot keeps running),
    `ingest` while serving → 200 again, with no restart."""
    import json

    process = start_serve(env, tmp_path / "serve.log")
    try:
        wait_until(lambda: health(env).returncode == 0)
        index = Path(env["SIGNAL_RAG_DATA_DIR"]) / "index"
        for backup in index.parent.glob("index.last-good"):  # no copy to fall back on
            shutil.rmtree(backup)
        dense = index / "dense.faiss"
        data = bytearray(dense.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dense.write_bytes(bytes(data))
        wait_until(lambda: health(env).returncode == 1)
        body = json.loads(health(env).stdout)
        assert body["checks"]["index"]["ok"] is False
        assert process.poll() is None, "still serving, from the fallback path"
        ingest = subprocess.run([*CLI, "ingest", str(EXAMPLES), "--rebuild"], env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert ingest.returncode == 0, ingest.stderr
        wait_until(lambda: health(env).returncode == 0)
    finally:
        stop(process)
    log = (tmp_path / "serve.log").read_text()
    assert '"event": "index_unavailable"' in log and '"event": "index_loaded"' in log
