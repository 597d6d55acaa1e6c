"""A real OpenAI-compatible HTTP server on loopback, with scripted replies and faults.

Why it exists: mocking the `openai` SDK hides what matters most in production, namely
how the real client and `langchain_openai` react to real HTTP: status codes mapped to
`openai.RateLimitError` / `InternalServerError` / `AuthenticationError`, `Retry-After`
headers, read timeouts, dropped connections and SSE streams. This server speaks just
enough of the API (`POST /v1/chat/completions`, streaming or not, `POST /v1/embeddings`,
`GET /v1/models`) for those clients. It uses only the standard library (a
`ThreadingHTTPServer` in a daemon thread) so tests need no extra dependency.

Usage::

    with FakeOpenAIServer() as server:
        server.enqueue(Status(429, headers={"Retry-After": "2"}), Reply("hello"))
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        ...  # first chat call raises RateLimitError, the second answers "hello"
        assert server.count(CHAT_PATH) == 2

Scripting: each endpoint path has its own FIFO queue of actions; every request to that
path consumes one. When a path's queue is empty, `server.default` answers (initially
`Reply()`, i.e. a normal answer; for embeddings and models a `Reply` means "answer
normally" and its text is unused). Unknown paths get a 404 and consume nothing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

__all__ = [
    "CHAT_PATH",
    "EMBEDDINGS_PATH",
    "MODELS_PATH",
    "Action",
    "FakeOpenAIServer",
    "Hang",
    "RecordedRequest",
    "Reply",
    "Slow",
    "Status",
    "embed_text",
    "rate_limited",
]

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"
_KNOWN_PATHS = frozenset({CHAT_PATH, EMBEDDINGS_PATH, MODELS_PATH})

DEFAULT_REPLY_TEXT = "fake answer"
DEFAULT_EMBEDDING_DIM = 384
MODEL_IDS = ("gpt-4o-mini", "text-embedding-3-small")

# Error "type"/"code" pairs as the real API sends them for common statuses.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Reply:
    """Answer normally; `text` may be a function of the parsed request body.

    `chunk_delay` pauses between SSE chunks of a streamed answer (a slow stream).
    """

    text: str | Callable[[dict[str, Any]], str] = DEFAULT_REPLY_TEXT
    chunk_delay: float = 0.0


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status.

    `body=None` sends an OpenAI-style `{"error": {...}}` JSON; a dict is sent as JSON,
    a str/bytes verbatim. `headers` are added to the response (e.g. `Retry-After`).
    """

    code: int
    body: dict[str, Any] | str | bytes | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Hang:
    """Hold the connection without answering for `seconds`, then drop it unanswered.

    Ends early (also unanswered) when the server closes, so `close()` stays prompt.
    """

    seconds: float


@dataclass(frozen=True)
class Slow:
    """Wait `delay` seconds, then answer like `Reply(text)` (aborted if the server closes)."""

    delay: float
    text: str = DEFAULT_REPLY_TEXT


Action = Reply | Status | Hang | Slow


def rate_limited(retry_after: float = 1, message: str | None = None) -> Status:
    """Build a 429 with a `Retry-After` header, the most common scripted fault."""
    body = None if message is None else _error_body(429, message)
    value = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
    return Status(429, body=body, headers={"Retry-After": value})


# ------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (recorded before the action runs)."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    query: str = ""
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (clients differ in header-name case)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


# ------------------------------------------------------------------------ embeddings


def embed_text(text: str, dim: int = DEFAULT_EMBEDDING_DIM) -> list[float]:
    """Deterministic unit-length vector from the SHA-256 of `text`.

    Public so tests can compute the vector the server will return for a text.
    """
    if dim <= 0:
        raise ValueError("dim must be positive")
    values: list[float] = []
    counter = 0
    seed = text.encode("utf-8")
    while len(values) < dim:
        digest = hashlib.sha256(seed + b"\x00" + counter.to_bytes(4, "big")).digest()
        for (word,) in struct.iter_unpack(">I", digest):
            values.append(word / 0xFFFFFFFF * 2.0 - 1.0)
        counter += 1
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _input_texts(raw: object) -> list[str]:
    """Normalise the `input` field: a string, a list of strings or token-id lists."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [json.dumps(raw)]  # one pre-tokenised input
    if isinstance(raw, list) and raw:
        texts: list[str] = []
        for item in raw:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list) and all(isinstance(x, int) for x in item):
                texts.append(json.dumps(item))
            else:
                raise ValueError("input items must be strings or lists of token ids")
        return texts
    raise ValueError("input must be a non-empty string or list")


def _count_tokens(text: str) -> int:
    """Crude token count (words), enough for plausible `usage` numbers."""
    return len(text.split())


def _prompt_text(messages: object) -> str:
    parts: list[str] = []
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return " ".join(parts)


def _error_body(code: int, message: str | None = None) -> dict[str, Any]:
    err_type, err_code = _ERROR_KINDS.get(
        code, ("server_error" if code >= 500 else "invalid_request_error", None)
    )
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return {
        "error": {
            "message": message or f"Fake server error: {code} {phrase}",
            "type": err_type,
            "param": None,
            "code": err_code,
        }
    }


def _stream_pieces(text: str) -> list[str]:
    """Split into word-sized pieces whose concatenation is exactly `text`."""
    pieces = [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]
    return pieces or [""]


# -------------------------------------------------------------------------- server


class _AbortedError(Exception):
    """The server is closing; stop the current response without answering."""


def _quiet(*_args: object, **_kwargs: object) -> None:
    """Swallow the stdlib handler's per-request log lines."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAIServer, port: int = 0) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hang up mid-response on purpose in these tests (timeouts, close()).
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | _AbortedError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; needed for chunked SSE
    server_version = "FakeOpenAI/1.0"
    server: _HTTPServer

    # -- plumbing -----------------------------------------------------------------

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, add=False)

    log_message = _quiet  # keep test output clean; requests are recorded instead

    def _send_json(self, code: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else None
        if data is None:
            data = (
                payload.encode("utf-8")
                if isinstance(payload, str)
                else json.dumps(payload).encode("utf-8")
            )
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_fake_{self.fake._next_id()}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- entry points -------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        raw = self._read_body() if method == "POST" else b""
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, bad_json = raw.decode("utf-8", "replace"), True
        self.fake._record(
            RecordedRequest(
                method=method,
                path=path,
                body=body,
                headers=dict(self.headers.items()),
                query=query,
            )
        )
        expected_method = "GET" if path == MODELS_PATH else "POST"
        try:
            if path not in _KNOWN_PATHS:
                self._send_json(404, _error_body(404, f"Unknown path {path}"))
                return
            if method != expected_method:
                self._send_json(405, _error_body(405, f"{method} not allowed on {path}"))
                return
            action = self.fake._next_action(path)
            if isinstance(action, Status):
                self._send_status(action)
                return
            if isinstance(action, Hang):
                self.fake._closing.wait(max(action.seconds, 0.0))
                self.close_connection = True  # drop it unanswered
                return
            if bad_json or (method == "POST" and not isinstance(body, dict)):
                self._send_json(400, _error_body(400, "Request body must be a JSON object"))
                return
            if isinstance(action, Slow):
                if self.fake._closing.wait(max(action.delay, 0.0)):
                    self.close_connection = True  # server closing: drop it unanswered
                    return
                action = Reply(action.text)
            self._answer(path, cast(dict[str, Any], body or {}), action)
        except (_AbortedError, OSError):
            self.close_connection = True

    def _send_status(self, action: Status) -> None:
        payload: Any = action.body if action.body is not None else _error_body(action.code)
        self._send_json(action.code, payload, action.headers)

    def _answer(self, path: str, body: dict[str, Any], reply: Reply) -> None:
        if path == MODELS_PATH:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODEL_IDS
            ]
            self._send_json(200, {"object": "list", "data": data})
        elif path == EMBEDDINGS_PATH:
            self._answer_embeddings(body)
        elif body.get("stream"):
            self._answer_stream(body, reply)
        else:
            self._answer_chat(body, reply)

    # -- chat ---------------------------------------------------------------------

    def _reply_text(self, body: dict[str, Any], reply: Reply) -> str:
        return reply.text(body) if callable(reply.text) else reply.text

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        prompt = _count_tokens(_prompt_text(body.get("messages")))
        completion = _count_tokens(text)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _answer_chat(self, body: dict[str, Any], reply: Reply) -> None:
        text = self._reply_text(body, reply)
        self._send_json(
            200,
            {
                "id": f"chatcmpl-fake-{self.fake._next_id()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or MODEL_IDS[0]),
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": self._usage(body, text),
            },
        )

    def _answer_stream(self, body: dict[str, Any], reply: Reply) -> None:
        text = self._reply_text(body, reply)
        base = {
            "id": f"chatcmpl-fake-{self.fake._next_id()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model") or MODEL_IDS[0]),
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "choices": [choice]}

        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in _stream_pieces(text)]
        events.append(chunk({}, "stop"))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append({**base, "choices": [], "usage": self._usage(body, text)})

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_fake_{self.fake._next_id()}")
        self.end_headers()
        for i, event in enumerate(events):
            if i > 1 and reply.chunk_delay > 0 and self.fake._closing.wait(reply.chunk_delay):
                raise _AbortedError
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- embeddings ---------------------------------------------------------------

    def _answer_embeddings(self, body: dict[str, Any]) -> None:
        try:
            texts = _input_texts(body.get("input"))
        except ValueError as exc:
            self._send_json(400, _error_body(400, str(exc)))
            return
        dim = body.get("dimensions") or self.fake.embedding_dim
        if not isinstance(dim, int) or dim <= 0:
            self._send_json(400, _error_body(400, "dimensions must be a positive integer"))
            return
        as_base64 = body.get("encoding_format") == "base64"
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = embed_text(text, dim)
            encoded: list[float] | str = vector
            if as_base64:  # the openai SDK asks for base64 float32 by default
                encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_count_tokens(t) for t in texts)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or MODEL_IDS[1]),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


class FakeOpenAIServer:
    """Loopback OpenAI-compatible server; starts serving in the constructor.

    Use as a context manager or call `close()`. Thread-safe: tests may enqueue actions
    and read `requests` while client threads are talking to it.
    """

    def __init__(
        self,
        *,
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        default: Action | None = None,
        port: int = 0,
    ) -> None:
        """`port`: a fixed one, e.g. to bring a server back where a client expects it."""
        self.embedding_dim = embedding_dim
        self.default: Action = default if default is not None else Reply()
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._queues: dict[str, deque[Action]] = {}
        self._connections: set[socket.socket] = set()
        self._ids = 0
        self._closing = threading.Event()
        self._closed = False
        self._httpd = _HTTPServer(self, port)
        host, port = self._httpd.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # -- scripting ----------------------------------------------------------------

    def enqueue(self, *actions: Action, path: str = CHAT_PATH) -> None:
        """Append actions to `path`'s queue; each request to `path` consumes one."""
        if path not in _KNOWN_PATHS:
            raise ValueError(f"unknown path {path!r}; expected one of {sorted(_KNOWN_PATHS)}")
        with self._lock:
            self._queues.setdefault(path, deque()).extend(actions)

    def pending(self, path: str = CHAT_PATH) -> int:
        """How many scripted actions for `path` are not consumed yet."""
        with self._lock:
            return len(self._queues.get(path, ()))

    def reset(self) -> None:
        """Forget recorded requests and queued actions; `default` becomes `Reply()`."""
        with self._lock:
            self._requests.clear()
            self._queues.clear()
            self.default = Reply()

    # -- inspection ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (copy) of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Return the recorded requests whose path (without query) equals `path`."""
        return [r for r in self.requests if r.path == path]

    def count(self, path: str | None = None) -> int:
        """Count the requests received, to `path` or in total."""
        with self._lock:
            if path is None:
                return len(self._requests)
            return sum(1 for r in self._requests if r.path == path)

    def wait_for(self, n: int, path: str | None = None, timeout: float = 5.0) -> bool:
        """Block until at least `n` requests (to `path`) were received; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._recorded:
            while True:
                seen = (
                    len(self._requests)
                    if path is None
                    else sum(1 for r in self._requests if r.path == path)
                )
                remaining = deadline - time.monotonic()
                if seen >= n:
                    return True
                if remaining <= 0:
                    return False
                self._recorded.wait(remaining)

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and drop open connections; returns promptly even mid-Hang."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()  # wakes Hang/Slow/slow-stream waits
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # unblock handlers idling on keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=2.0)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeOpenAIServer(base_url={self.base_url!r}, requests={self.count()})"

    # -- used by the handler ------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._recorded:
            self._requests.append(request)
            self._recorded.notify_all()

    def _next_action(self, path: str) -> Action:
        with self._lock:
            queue = self._queues.get(path)
            if queue:
                return queue.popleft()
            return self.default

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
