"""Self-test of the loopback OpenAI fake against the real `openai` and `langchain_openai`.

If these pass, other tests can trust that a scripted fault reaches the code under test
as the same exception type the real API would produce.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from openai.types.chat import ChatCompletionMessageParam

from agent.testing.openai_server import (
    CHAT_PATH,
    EMBEDDINGS_PATH,
    MODELS_PATH,
    FakeOpenAIServer,
    Hang,
    Reply,
    Slow,
    Status,
    embed_text,
    rate_limited,
)

API_KEY = "sk-test-key"
MODEL = "gpt-4o-mini"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is signal-rag?"}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=5.0
    ) as cli:
        yield cli


def _chat(client: openai.OpenAI) -> str | None:
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    return resp.choices[0].message.content


def test_default_reply_has_openai_shape(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == MODEL
    assert resp.created > 0
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "fake answer"
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 3
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_requests_are_recorded_with_body_and_auth(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    _chat(client)

    [req] = server.requests
    assert (req.method, req.path) == ("POST", CHAT_PATH)
    assert req.body["model"] == MODEL
    assert req.body["messages"] == MESSAGES
    assert req.header("authorization") == f"Bearer {API_KEY}"
    assert any(k.lower() == "authorization" for k in req.headers)
    assert server.count(CHAT_PATH) == 1
    assert server.count(EMBEDDINGS_PATH) == 0


def test_queue_is_consumed_in_order_then_default(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Reply("first"), Status(500), Reply(lambda body: body["model"]))

    assert _chat(client) == "first"
    with pytest.raises(openai.InternalServerError):
        _chat(client)
    assert _chat(client) == MODEL
    assert _chat(client) == "fake answer"
    assert server.pending() == 0
    assert server.count(CHAT_PATH) == 4


def test_queues_are_per_path(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.enqueue(Status(503), path=EMBEDDINGS_PATH)

    assert _chat(client) == "fake answer"
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_settable_default_applies_when_queue_is_empty(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.default = Status(503)
    server.enqueue(Reply("ok"))

    assert _chat(client) == "ok"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            _chat(client)
        assert info.value.status_code == 503


def test_429_raises_rate_limit_error_with_retry_after(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Status(429, headers={"Retry-After": "7"}), rate_limited(2))

    with pytest.raises(openai.RateLimitError) as info:
        _chat(client)
    exc = info.value
    assert exc.status_code == 429
    assert exc.response.headers["retry-after"] == "7"
    assert exc.code == "rate_limit_exceeded"
    assert exc.type == "requests"

    with pytest.raises(openai.RateLimitError) as info2:
        _chat(client)
    assert info2.value.response.headers["Retry-After"] == "2"


@pytest.mark.parametrize(
    ("code", "exc_type"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_error_statuses_map_to_sdk_exceptions(
    server: FakeOpenAIServer,
    client: openai.OpenAI,
    code: int,
    exc_type: type[openai.APIStatusError],
) -> None:
    server.enqueue(Status(code))

    with pytest.raises(exc_type) as info:
        _chat(client)
    assert info.value.status_code == code
    assert isinstance(info.value.body, dict)
    assert "message" in info.value.body  # the SDK unwraps {"error": {...}}


def test_custom_error_body_is_sent_verbatim(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    body = {"error": {"message": "bad key", "type": "invalid_request_error", "code": "nope"}}
    server.enqueue(Status(401, body=body))

    with pytest.raises(openai.AuthenticationError) as info:
        _chat(client)
    assert info.value.code == "nope"
    assert "bad key" in str(info.value)


def test_hang_triggers_client_timeout_quickly(server: FakeOpenAIServer) -> None:
    server.enqueue(Hang(5))
    with openai.OpenAI(
        base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=0.5
    ) as fast_client:
        start = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            _chat(fast_client)
        elapsed = time.monotonic() - start

    assert 0.4 <= elapsed < 4.0  # the client's 0.5 s timeout, not the 5 s hang
    assert server.count(CHAT_PATH) == 1


def test_hang_then_drops_connection_unanswered(server: FakeOpenAIServer) -> None:
    server.enqueue(Hang(0.2))
    with (
        openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as cli,
        pytest.raises(openai.APIConnectionError) as info,
    ):
        _chat(cli)
    assert not isinstance(info.value, openai.APITimeoutError)


def test_slow_answers_after_delay(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.enqueue(Slow(0.3, "late answer"))

    start = time.monotonic()
    assert _chat(client) == "late answer"
    assert time.monotonic() - start >= 0.3


def test_close_is_prompt_while_a_request_hangs() -> None:
    server = FakeOpenAIServer(default=Hang(60))
    outcome: list[BaseException | None] = []

    def call() -> None:
        with openai.OpenAI(
            base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=30.0
        ) as cli:
            try:
                _chat(cli)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    assert server.wait_for(1, CHAT_PATH, timeout=5.0)

    start = time.monotonic()
    server.close()
    assert time.monotonic() - start < 1.0
    worker.join(timeout=5.0)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], openai.APIConnectionError)
    server.close()  # idempotent
    assert server.closed


def test_embeddings_shape_and_determinism(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    texts = ["alpha", "beta", "alpha"]
    resp = client.embeddings.create(model="text-embedding-3-small", input=texts)

    assert resp.object == "list"
    assert resp.model == "text-embedding-3-small"
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in resp.data)
    vectors = [d.embedding for d in resp.data]
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert resp.usage.prompt_tokens == 3

    # The SDK asked for base64 (its default); a float request gives the same vector.
    assert server.requests[0].body["encoding_format"] == "base64"
    single = client.embeddings.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float"
    )
    assert single.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    assert single.data[0].embedding == pytest.approx(embed_text("alpha"), abs=1e-12)


def test_embedding_dimension_is_configurable() -> None:
    with (
        FakeOpenAIServer(embedding_dim=8) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0, timeout=5.0) as cli,
    ):
        resp = cli.embeddings.create(model="m", input="x")
        assert len(resp.data[0].embedding) == 8
        resp = cli.embeddings.create(model="m", input="x", dimensions=16)
        assert len(resp.data[0].embedding) == 16


def test_langchain_embeddings(server: FakeOpenAIServer) -> None:
    emb = OpenAIEmbeddings(
        model="text-embedding-3-small",
        base_url=server.base_url,
        api_key=API_KEY,  # type: ignore[arg-type]
        max_retries=0,
        timeout=5.0,
        check_embedding_ctx_length=False,  # avoids tiktoken, which downloads its tables
    )
    docs = emb.embed_documents(["one", "two"])
    query = emb.embed_query("one")

    assert len(docs) == 2
    assert all(len(v) == 384 for v in docs)
    assert query == pytest.approx(docs[0], abs=1e-6)


def test_models_list(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]

    assert "gpt-4o-mini" in ids
    assert server.count(MODELS_PATH) == 1


def test_unknown_path_is_404_and_consumes_nothing(server: FakeOpenAIServer) -> None:
    server.enqueue(Status(500))
    with httpx.Client(trust_env=False) as raw:
        resp = raw.post(f"{server.base_url}/nope", json={})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert server.pending(CHAT_PATH) == 1


def test_raw_sse_format(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply("a b"))
    with httpx.Client(trust_env=False) as raw:
        resp = raw.post(
            f"{server.base_url}/chat/completions",
            json={"model": MODEL, "messages": MESSAGES, "stream": True},
        )
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [e for e in resp.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert '"chat.completion.chunk"' in events[0]


def test_openai_client_streaming(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.enqueue(Reply("streamed words here", chunk_delay=0.01))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish: list[str] = []
    usage_seen = False
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage_seen = True
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)

    assert "".join(pieces) == "streamed words here"
    assert finish == ["stop"]
    assert usage_seen


def test_langchain_chat_streaming(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply("hello from the stream"))
    llm = ChatOpenAI(
        model=MODEL,
        base_url=server.base_url,
        api_key=API_KEY,  # type: ignore[arg-type]
        max_retries=0,
        timeout=5.0,
        streaming=True,
    )
    chunks = list(llm.stream("hi"))

    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert sum(1 for c in chunks if c.content) >= 4
    assert "".join(str(c.content) for c in chunks) == "hello from the stream"
    assert server.requests[0].body["stream"] is True

    # invoke() with streaming=True also goes through SSE and assembles the message.
    assert llm.invoke("again").content == "fake answer"
    assert server.requests[1].body["stream"] is True


def test_langchain_chat_surfaces_sdk_errors(server: FakeOpenAIServer) -> None:
    server.enqueue(rate_limited(3))
    llm = ChatOpenAI(
        model=MODEL,
        base_url=server.base_url,
        api_key=API_KEY,  # type: ignore[arg-type]
        max_retries=0,
        timeout=5.0,
    )
    with pytest.raises(openai.RateLimitError) as info:
        llm.invoke("hi")
    assert info.value.response.headers["retry-after"] == "3"
    assert llm.invoke("hi").content == "fake answer"
    assert server.count(CHAT_PATH) == 2
