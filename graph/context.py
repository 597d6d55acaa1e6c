"""What nodes need from outside the graph, as small Protocols passed via `context_schema`.

The application (agent/) supplies real implementations; tests supply fakes. The graph
never imports the application, which keeps the dependency arrows one-way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from graph.contract import RunEvent
from graph.prompts import new_canary
from guards.passages import PassageCheck
from knowledge.retrieval import ScoredChunk

log = logging.getLogger(__name__)


class PassageSource(Protocol):
    """Finds passages for a question; raises when the knowledge base is unavailable."""

    def search(self, question: str, k: int) -> list[ScoredChunk]: ...


class PassageLookup(Protocol):
    """Passage checks computed ahead of time, by the chunk's raw text (guards.passages)."""

    def get(self, raw: str) -> PassageCheck | None: ...


class Breaker(Protocol):
    """A circuit breaker around the model."""

    def allow(self) -> bool: ...

    def record_success(self) -> None: ...

    def record_failure(self) -> None: ...


class AuditSink(Protocol):
    """Receives one content-free event per run. `emit` is called on the event loop, so it
    must not wait for a disk or a network (the file sink queues the line for a writer
    thread of its own: `agent.audit.JsonLinesAuditSink`)."""

    def emit(self, event: RunEvent) -> None: ...


class Alerts(Protocol):
    """Raises an operator alert (OBS-6, SEC-6) for a condition such as a failing guard.

    `fields` are content-free (node names, exception class names), never message text.
    """

    def alert(self, condition: str, **fields: str) -> None: ...


AttributeValue = str | int | float | bool


class Span(Protocol):
    """One unit of traced work; attributes must be content-free (OBS-3)."""

    def set(self, key: str, value: AttributeValue) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class Spans(Protocol):
    """Starts spans that are children of whatever span is current (OBS-3). The
    application supplies an OpenTelemetry implementation; the graph sees only this."""

    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None
             ) -> AbstractContextManager[Span]: ...


class _NoSpan:
    def set(self, key: str, value: AttributeValue) -> None:
        return None

    def fail(self, error: BaseException) -> None:
        return None


class NoSpans:
    """The default: tracing off, nothing recorded."""

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None
             ) -> Iterator[Span]:
        yield _NoSpan()


class LogAlerts:
    """The default: a structured `operator_alert` log event that log shipping can page on."""

    def alert(self, condition: str, **fields: str) -> None:
        log.error("operator_alert", extra={"condition": condition, **fields})


class AlwaysClosed:
    """A breaker that never opens, for callers with no model or in tests."""

    def allow(self) -> bool:
        return True

    def record_success(self) -> None:
        return None

    def record_failure(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class GraphContext:
    """Run-scoped dependencies of the graph's nodes."""

    knowledge: PassageSource | None
    """None means no verified index is loaded: the graph answers in degraded mode."""
    audit: AuditSink
    passage_checks: PassageLookup | None = None
    """Passage checks computed ahead of time for the loaded index (PERF-1); a chunk
    missing there is checked when retrieved."""
    query_vector: Callable[[str], Any] | None = None
    """Embeds the message for the threat check's embedding head (guards/semantic.py); the
    knowledge base keeps the vector, so retrieval does not embed the message again. None
    when the embedder is not the model the head was trained on: the head is skipped."""
    encoder: Callable[[], Any] | None = None
    """Loads the fine-tuned injection encoder (guards/encoder.py) for the threat check;
    None when it is switched off (`SIGNAL_RAG_GUARDS__ENCODER`)."""
    chat_model: BaseChatModel | None = None
    """None selects the offline extractive answerer."""
    model_name: str = "extractive"
    breaker: Breaker = field(default_factory=AlwaysClosed)
    top_k: int = 4
    max_input_chars: int = 2000
    max_reply_chars: int = 8000
    """The output guard's length cap on a whole reply, sources included."""
    canary: str = field(default_factory=new_canary)
    """Per-deployment secret marker in the system prompt; seeing it in a reply is a leak.
    The application passes the persisted one; the default suits tests only."""
    alerts: Alerts = field(default_factory=LogAlerts)
    spans: Spans = field(default_factory=NoSpans)
    """A span per node and per model call (OBS-3); off by default."""
    max_attempts: int = 3
    """Must equal the generate node's RetryPolicy.max_attempts (the builder takes both)."""
    max_retry_after: float = 30.0
    """Longest Retry-After we wait for; a longer one goes to the fallback at once."""
    memory_ttl: float = 24 * 3600.0
    """Seconds of inactivity after which a thread's history is dropped."""
    wall_clock: Callable[[], float] = time.time
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
