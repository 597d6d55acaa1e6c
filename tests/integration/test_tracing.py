"""One trace per message (OBS-3): receive → handle → every node → model call → send,
parented correctly, content-free; exported to a real OTLP/HTTP receiver from `serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent.addressing import BotIdentity
from agent.assistant import Assistant
from agent.audit import MemoryAuditSink
from agent.observability.monitors import AlertingAuditSink, build_alerting
from agent.observability.tracing import OtelSpans, build_tracer_provider, tracer_of
from agent.ratelimit import ActivationLockout, UserRateLimiter
from agent.resilience import CircuitBreaker
from agent.service import AccessPolicy
from agent.signal import create_transport
from agent.store import Store
from agent.testing.openai_server import FakeOpenAIServer, Reply
from agent.testing.otlp_receiver import OtlpReceiver
from agent.testing.ports import free_port
from agent.testing.signal_daemon import (
    ALICE_UUID,
    BOT_NUMBER,
    BOT_UUID,
    FakeSignalDaemon,
    direct_message,
    fake_signal_daemon,
)
from agent.users import UserDirectory
from agent.wiring import assemble_service, build_assistant
from tests.integration.conftest import EXAMPLES

pytestmark = pytest.mark.slow
QUESTION = "What does exit code 3 mean?"
ANSWER = "Exit code 3 means the index is missing or damaged [1]."
NODES = {"node sanitize", "node threat_check", "node retrieve", "node generate",
         "node output_guard", "node audit"}


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def sim() -> Iterator[FakeSignalDaemon]:
    with fake_signal_daemon(keepalive_interval=0.2, tcp=False) as daemon:
        yield daemon


async def run_bot(sim: FakeSignalDaemon, assistant: Assistant, tmp_path: Path,
                  tracer: Any, messages: int) -> None:
    service = assemble_service(
        transport=create_transport(sim.http_url, account=BOT_NUMBER), assistant=assistant,
        store=Store(tmp_path / "inbox.sqlite3"), users=UserDirectory(tmp_path / "users.sqlite3"),
        limiter=UserRateLimiter(), lockout=ActivationLockout(),
        bot=BotIdentity(uuid=BOT_UUID, number=BOT_NUMBER),
        access=AccessPolicy(passphrase=None), tracer=tracer, drain_timeout=5.0)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.sleep(0.3)
    for i in range(messages):
        sim.deliver(direct_message(f"{QUESTION} ({i})" if i else QUESTION))
    await sim.wait_for("send", messages, timeout=30)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    await service.transport.aclose()
    service.store.close()
    service.users.close()


def by_name(spans: list[Any]) -> dict[str, Any]:
    return {span.name: span for span in spans}


async def test_one_message_is_one_trace_parented_from_receive_to_send(
        sim: FakeSignalDaemon, model: FakeOpenAIServer, settings_for: Any, *,
        local_embedder: Any, sample_index: Any, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider({}, exporter=exporter, batch=False)
    assert provider is not None
    tracer = tracer_of(provider)
    settings = settings_for(SIGNAL_RAG_LLM__BASE_URL=model.base_url,
                            SIGNAL_RAG_LLM__MODEL="chat-test",
                            SIGNAL_RAG_LLM__API_KEY="sk-test-key")
    assistant = build_assistant(settings, embedder=local_embedder, index=sample_index,
                          audit=MemoryAuditSink(), spans=OtelSpans(tracer))
    model.default = Reply(ANSWER)
    await run_bot(sim, assistant, tmp_path, tracer, 1)
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    assert {"signal receive", "bot handle", "retrieval", "embeddings all-MiniLM-L6-v2",
            "chat chat-test", "signal send"} | NODES <= set(names)
    assert len({span.context.trace_id for span in spans}) == 1, "one trace"

    def parent(name: str) -> str:
        parent_id = names[name].parent.span_id
        return next(s.name for s in spans if s.context.span_id == parent_id)

    assert names["signal receive"].parent is None
    assert parent("bot handle") == "signal receive"
    assert all(parent(node) == "bot handle" for node in NODES)
    assert parent("retrieval") == "node retrieve"
    # The threat check's embedding head embeds the message; retrieval reuses that vector.
    assert parent("embeddings all-MiniLM-L6-v2") == "node threat_check"
    assert sum(s.name == "embeddings all-MiniLM-L6-v2" for s in spans) == 1
    assert parent("chat chat-test") == "node generate"
    assert parent("signal send") == "bot handle"
    chat = names["chat chat-test"].attributes
    assert chat["gen_ai.request.model"] == "chat-test"
    assert chat["gen_ai.usage.input_tokens"] > 0 and chat["gen_ai.usage.output_tokens"] > 0
    assert names["bot handle"].attributes["signal_rag.route"] == "answered"
    assert len(names["signal receive"].attributes["signal_rag.user"]) == 16
    for span in spans:  # content-free
        assert not any("exit code" in str(v).lower() for v in span.attributes.values())
        assert not span.events, "no exception events (their messages can carry text)"
    provider.shutdown()


async def test_an_open_circuit_shows_as_the_fallback_span(
        sim: FakeSignalDaemon, model: FakeOpenAIServer, settings_for: Any, *,
        local_embedder: Any, sample_index: Any, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider({}, exporter=exporter, batch=False)
    tracer = tracer_of(provider)
    settings = settings_for(SIGNAL_RAG_LLM__BASE_URL=model.base_url,
                            SIGNAL_RAG_LLM__MODEL="chat-test",
                            SIGNAL_RAG_LLM__API_KEY="sk-test-key")
    breaker = CircuitBreaker(threshold=1)
    breaker.record_failure()  # open
    monitors = build_alerting(settings)  # as `serve` wires it: the audit trail feeds alerts
    assistant = build_assistant(settings, embedder=local_embedder, index=sample_index,
                          audit=AlertingAuditSink(MemoryAuditSink(), monitors.model,
                                                  monitors.errors),
                          breaker=breaker, alerts=monitors.manager, spans=OtelSpans(tracer))
    await run_bot(sim, assistant, tmp_path, tracer, 1)
    assert monitors.manager.is_active("model_circuit_open")
    names = by_name(exporter.get_finished_spans())
    assert "node fallback" in names and "chat chat-test" not in names
    assert names["node generate"].attributes["signal_rag.fallback_reason"] == "circuit_open"
    assert names["bot handle"].attributes["signal_rag.route"] == "fallback:circuit_open"
    assert model.count("/v1/chat/completions") == 0
    assert provider is not None
    provider.shutdown()


def test_serve_exports_its_traces_to_an_otlp_http_receiver(
        sim: FakeSignalDaemon, model: FakeOpenAIServer, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "agent.cli"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNAL_RAG_", "OTEL_")) and k != "OPENAI_API_KEY"}
    (tmp_path / "no-secrets").mkdir()
    with OtlpReceiver() as receiver:
        env.update(
            SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"),
            SIGNAL_RAG_SECRETS_DIR=str(tmp_path / "no-secrets"),
            SIGNAL_RAG_EMBEDDINGS__PROVIDER="openai", SIGNAL_RAG_EMBEDDINGS__MODEL="embed-test",
            SIGNAL_RAG_LLM__BASE_URL=model.base_url, SIGNAL_RAG_LLM__MODEL="chat-test",
            SIGNAL_RAG_LLM__API_KEY="sk-test-key", SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY="-1",
            SIGNAL_RAG_SIGNAL__URL=sim.http_url, SIGNAL_RAG_SIGNAL__ACCOUNT=BOT_NUMBER,
            SIGNAL_RAG_SIGNAL__BOT_UUID=BOT_UUID, SIGNAL_RAG_ACCESS__ALLOWED=ALICE_UUID,
            SIGNAL_RAG_HEALTH__ADDR=f"127.0.0.1:{free_port()}",
            SIGNAL_RAG_AUDIT__PEPPER="test-pepper-0123456789abcdef",
            OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="bot-under-test")
        ingest = subprocess.run([*cli, "ingest", str(EXAMPLES)], env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert ingest.returncode == 0, ingest.stderr
        model.default = Reply(ANSWER)
        with (tmp_path / "serve.log").open("wb") as log:
            process = subprocess.Popen([*cli, "serve"], env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while sim.subscriber_count == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            sim.deliver(direct_message(QUESTION))
            while sim.count("send") < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sim.count("send") == 1
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        spans = list(receiver.spans)
    assert all(ct == "application/x-protobuf" for ct in receiver.content_types)
    names = {span.name for span in spans}
    assert {"signal receive", "bot handle", "chat chat-test", "signal send"} | NODES <= names
    assert len({span.trace_id for span in spans}) == 1, "one message, one trace"
    assert {span.service for span in spans} == {"bot-under-test"}
    assert not any(QUESTION.lower() in str(span.attributes).lower() for span in spans)
