"""What nodes need from outside the graph, as small Protocols passed via `context_schema`.

The application (agent/) supplies real implementations; tests supply fakes. The graph
never imports the application, which keeps the dependency arrows one-way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from knowledge.retrieval import ScoredChunk


class PassageSource(Protocol):
    """Finds passages for a question; raises when the knowledge base is unavailable."""

    def search(self, question: str, k: int) -> list[ScoredChunk]: ...


class Breaker(Protocol):
    """A circuit breaker around the model."""

    def allow(self) -> bool: ...

    def record_success(self) -> None: ...

    def record_failure(self) -> None: ...


class AuditSink(Protocol):
    """Receives one content-free event per run."""

    def emit(self, event: Mapping[str, Any]) -> None: ...


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
    chat_model: BaseChatModel | None = None
    """None selects the offline extractive answerer."""
    model_name: str = "extractive"
    breaker: Breaker = field(default_factory=AlwaysClosed)
    top_k: int = 4
    max_input_chars: int = 2000
    max_attempts: int = 3
    """Must equal the generate node's RetryPolicy.max_attempts (the builder takes both)."""
    max_retry_after: float = 30.0
    """Longest Retry-After we wait for; a longer one goes to the fallback at once."""
    memory_ttl: float = 24 * 3600.0
    """Seconds of inactivity after which a thread's history is dropped."""
    wall_clock: Callable[[], float] = time.time
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
