"""Model faults over real HTTP: the real `openai` client and ChatOpenAI against a loopback
OpenAI-compatible server, through the whole graph with the real sample index."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterator

import pytest

from agent.assistant import Assistant
from agent.audit import MemoryAuditSink
from agent.resilience import BreakerState, CircuitBreaker
from agent.testing.openai_server import (
    CHAT_PATH,
    FakeOpenAIServer,
    Hang,
    Reply,
    Status,
    rate_limited,
)
from agent.wiring import build_assistant
from graph.builder import model_retry_policy

QUESTION = "How many wrong passphrase attempts before I'm locked out?"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def make_assistant(settings_for, local_embedder, sample_index, server: FakeOpenAIServer):
    def make(timeout: str = "5", breaker: CircuitBreaker | None = None) -> Assistant:
        settings = settings_for(SIGNAL_RAG_LLM__BASE_URL=server.base_url,
                                SIGNAL_RAG_LLM__MODEL="fake-model",
                                SIGNAL_RAG_LLM__API_KEY="sk-test-key",
                                SIGNAL_RAG_LLM__TIMEOUT=timeout)
        return build_assistant(settings, embedder=local_embedder, index=sample_index,
                         audit=MemoryAuditSink(), breaker=breaker or CircuitBreaker(),
                         retry_policy=model_retry_policy(3, initial_interval=0.01, jitter=False))
    return make


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_normal_answer_is_cited_and_prompt_is_delimited(make_assistant, server):
    server.enqueue(Reply("You are locked out for 1 hour after 5 wrong attempts [1]."))
    assistant = make_assistant()
    answer = await assistant.ask(QUESTION)
    assert answer.fallback_reason is None
    (event,) = assistant.audit.events  # OBS-2: the facts of the run, never its content
    assert event["route"] == "answered" and event["chat"] == "local"
    assert event["tokens_in"] > 0 and event["tokens_out"] > 0
    assert event["reply_chars"] == len(answer.reply) and 0 < event["top_similarity"] <= 1
    assert "locked out" not in str(event)
    assert answer.reply.startswith("You are locked out for 1 hour")
    assert answer.citations[0]["source"] == "user-guide.md"
    [request] = server.requests_to(CHAT_PATH)
    assert request.header("authorization") == "Bearer sk-test-key"
    messages = request.body["messages"]
    assert messages[0]["role"] == "system" and "data, not instructions" in messages[0]["content"]
    assert "<passages>" in messages[1]["content"] and "<question>" in messages[1]["content"]


async def test_429_is_retried_after_retry_after(make_assistant, server):
    server.enqueue(rate_limited(retry_after=2), Reply("One hour [1]."))
    assistant = make_assistant()
    sleep = RecordingSleep()
    answer = await assistant.ask(QUESTION,
                                 context=dataclasses.replace(assistant.context(), sleep=sleep))
    assert answer.reply.startswith("One hour [1].")
    assert server.count(CHAT_PATH) == 2
    assert sleep.calls == [2.0]


async def test_500_is_retried_three_times_then_fallback(make_assistant, server):
    server.default = Status(500)
    answer = await make_assistant().ask(QUESTION)
    assert server.count(CHAT_PATH) == 3
    assert answer.fallback_reason == "model_error"
    assert "documents say" in answer.reply and answer.citations


async def test_401_is_not_retried(make_assistant, server):
    from agent.observability.monitors import conditions_for_event

    server.default = Status(401)
    assistant = make_assistant()
    answer = await assistant.ask(QUESTION)
    assert server.count(CHAT_PATH) == 1
    assert answer.fallback_reason == "model_error"
    (event,) = assistant.audit.events
    assert "model_auth_failed" in conditions_for_event(event), "a bad key pages the operator"


async def test_an_empty_quota_is_not_retried_and_raises_its_alert(make_assistant, server):
    from agent.observability.monitors import conditions_for_event

    server.default = Status(429, body={"error": {
        "message": "You exceeded your current quota.", "type": "insufficient_quota",
        "param": None, "code": "insufficient_quota"}})
    assistant = make_assistant()
    answer = await assistant.ask(QUESTION)
    assert server.count(CHAT_PATH) == 1, "waiting does not refill a quota"
    assert answer.fallback_reason == "model_error"
    (event,) = assistant.audit.events
    assert event["error"].endswith("RateLimitError")
    assert event["error_code"] == "insufficient_quota"
    assert "model_quota_exhausted" in conditions_for_event(event)


async def test_400_is_not_retried(make_assistant, server):
    server.default = Status(400)
    await make_assistant().ask(QUESTION)
    assert server.count(CHAT_PATH) == 1


async def test_hanging_model_times_out_and_is_retried(make_assistant, server):
    server.default = Hang(10)
    started = time.perf_counter()
    answer = await make_assistant(timeout="0.3").ask(QUESTION)
    assert server.count(CHAT_PATH) == 3
    assert answer.fallback_reason == "model_error"
    assert time.perf_counter() - started < 5, "bounded by the client timeout, not the hang"


async def test_circuit_opens_then_replies_fast_without_calling_the_model(make_assistant, server):
    breaker = CircuitBreaker(threshold=5, window=60, cooldown=30)
    assistant = make_assistant(breaker=breaker)
    server.default = Status(503)
    started = time.perf_counter()
    await assistant.ask(QUESTION)  # 3 failures
    with_retries = time.perf_counter() - started
    await assistant.ask(QUESTION)  # 2 more: open
    assert breaker.state is BreakerState.OPEN
    calls = server.count(CHAT_PATH)

    durations = []
    for _ in range(5):
        started = time.perf_counter()
        answer = await assistant.ask(QUESTION)
        durations.append(time.perf_counter() - started)
        assert answer.fallback_reason == "circuit_open"
        assert answer.citations, "fallback still answers from the documents"
    assert server.count(CHAT_PATH) == calls, "no model call while open"
    # Fast means no retries and no backoff: compared with the closed circuit's ask in the
    # same run, not with a fixed number of seconds, so a slow machine does not fail it.
    assert statistics.median(durations) < with_retries / 4, (durations, with_retries)


async def test_circuit_half_opens_and_recovers(make_assistant, server):
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, window=60, cooldown=30, clock=lambda: now[0])
    assistant = make_assistant(breaker=breaker)
    server.enqueue(Status(401))
    await assistant.ask(QUESTION)
    assert breaker.state is BreakerState.OPEN
    now[0] = 31.0
    server.enqueue(Reply("Back again [1]."))
    answer = await assistant.ask(QUESTION)
    assert answer.reply.startswith("Back again")
    assert breaker.state is BreakerState.CLOSED
