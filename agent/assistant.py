"""Wires settings into the graph: embedder, knowledge base, chat model, breaker, audit sink.

Both the CLI and the Signal service ask questions through `Assistant.ask`, so there is
one place where the graph's context is assembled; `agent.wiring` builds the Assistant.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import RetryPolicy

from agent.audit import JsonLinesAuditSink
from agent.observability.tracing import OtelSpans, TracedEmbedder, TracedKnowledge, run_id
from agent.resilience import BreakerState, CircuitBreaker
from agent.settings import Settings
from graph.builder import build_graph, model_retry_policy
from graph.context import Alerts, AuditSink, GraphContext, LogAlerts, NoSpans, PassageSource
from graph.contract import FallbackReason
from graph.prompts import new_canary
from graph.state import Citation, Passage
from guards.passages import PassageChecks
from knowledge.batching import BatchingEmbedder
from knowledge.embeddings import (
    Embedder,
    EmbeddingError,
    LocalEmbedder,
    ModelFilesError,
    OpenAIEmbedder,
)
from knowledge.index import (
    EmbeddingInfo,
    KnowledgeIndex,
    KnowledgeIndexError,
    check_embedding,
    open_index,
)
from knowledge.retrieval import KnowledgeBase

log = logging.getLogger(__name__)

CANARY_FILE = ".prompt-canary"


@dataclass(frozen=True, slots=True)
class Answer:
    reply: str
    citations: list[Citation] = field(default_factory=list)
    fallback_reason: FallbackReason | None = None
    passages: list[Passage] = field(default_factory=list)
    """The retrieved passages (feedback records their chunk ids and top similarity)."""


def build_embedder(settings: Settings, *, max_retries: int = 2) -> Embedder:
    """`max_retries`: the OpenAI client's own retries; `serve` passes 0, its dependency
    probe and the inbox hold are the retry layer there (a hung endpoint then costs one
    timeout per question, not three)."""
    cfg = settings.embeddings
    if cfg.provider == "local":
        # Concurrent questions share one forward pass (the model has no query prefix).
        return BatchingEmbedder(LocalEmbedder(cfg.model, batch_size=cfg.batch_size,
                                              model_dir=cfg.model_dir, threads=cfg.threads,
                                              parallel_batches=cfg.parallel_batches))
    api_key = cfg.api_key.get_secret_value() if cfg.api_key else "not-needed"
    return OpenAIEmbedder(cfg.model, base_url=cfg.base_url, api_key=api_key,
                          timeout=settings.llm.timeout, batch_size=cfg.batch_size,
                          max_retries=max_retries)


def embedding_info(settings: Settings, embedder: Embedder) -> EmbeddingInfo:
    return EmbeddingInfo(provider=settings.embeddings.provider, model=embedder.model_name,
                         dimension=embedder.dimension)


def build_chat_model(settings: Settings) -> BaseChatModel | None:
    """ChatOpenAI with an explicit timeout and no SDK retries (the graph retries)."""
    cfg = settings.llm
    if not cfg.model:
        return None
    from langchain_openai import ChatOpenAI

    api_key = cfg.api_key.get_secret_value() if cfg.api_key else "not-needed"
    return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, api_key=api_key,
                      timeout=cfg.timeout, max_retries=0, temperature=cfg.temperature,
                      max_completion_tokens=cfg.max_tokens)


def load_or_create_canary(data_dir: Path, configured: str | None) -> str:
    """The configured canary, else one generated once and kept (0600) in the data dir, so
    it stays the same across restarts and replicas sharing the data dir (SEC-3). Called by
    the composition root (`agent.wiring`), never by a constructor."""
    if configured:
        return configured.strip()
    path = data_dir / CANARY_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    canary = new_canary()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(canary)
    return canary


def load_knowledge(settings: Settings, embedder: Embedder, path: Path | None = None, *,
                   endpoint_may_be_down: bool = False) -> KnowledgeIndex:
    """Open and verify the index (the configured one unless `path` says otherwise) for
    the configured embedder (raises KnowledgeIndexError).

    An OpenAI-compatible embedder learns its dimension from a call. With
    `endpoint_may_be_down` (`serve`), an endpoint that does not answer yet does not keep
    the index from loading: provider and model are checked now, and the dimension by the
    embedding probe once the endpoint answers (agent/observability/dependencies.py).
    Without it (`ask`, `chat`) the EmbeddingError goes to the caller."""
    index_dir = path or settings.index_path
    try:
        expected = embedding_info(settings, embedder)
    except EmbeddingError as exc:
        # A missing or damaged local model will not come back by itself: exit 2, not a wait.
        if not endpoint_may_be_down or isinstance(exc, ModelFilesError):
            raise
        log.warning("embedding_dimension_unknown", extra={"error": "EmbeddingError"})
        index = open_index(index_dir)
        built = index.manifest.embedding
        check_embedding(index.manifest, EmbeddingInfo(
            settings.embeddings.provider, embedder.model_name, built.dimension))
    else:
        index = open_index(index_dir, expected)
    if index.restored_from_last_good:
        log.warning("index_restored_from_last_good")
    return index


class Assistant:
    """Answers one question through the graph; owns nothing but the wiring.

    Built complete by the composition root (`agent.wiring.build_assistant`), which also
    creates the files it needs (pepper, canary): nothing is replaced on a built one."""

    def __init__(self, settings: Settings, *, hash_user: Callable[[str], str], canary: str,
                 embedder: Embedder | None = None,
                 chat_model: BaseChatModel | None = None, audit: AuditSink | None = None,
                 index: KnowledgeIndex | None = None,
                 breaker: CircuitBreaker | None = None,
                 retry_policy: RetryPolicy | None = None,
                 checkpointer: BaseCheckpointSaver[Any] | None = None,
                 alerts: Alerts | None = None, spans: OtelSpans | None = None,
                 hold_passage_checks: bool = False) -> None:
        self.settings = settings
        self.embedder = embedder or build_embedder(settings)
        self.chat_model = chat_model if chat_model is not None else build_chat_model(settings)
        self.hash_user = hash_user
        """The HMAC of a Signal id (from the audit pepper)."""
        self.audit = audit or JsonLinesAuditSink(settings.data_dir / "audit.jsonl")
        self.canary = canary
        self.alerts = alerts or LogAlerts()
        self.spans = spans
        """With tracing on (`serve`): spans per node, model call, retrieval."""
        self.breaker = breaker or CircuitBreaker(
            settings.breaker.failure_threshold, settings.breaker.window,
            settings.breaker.cooldown, on_change=_log_breaker)
        self.passage_checks: PassageChecks | None = None
        self._hold_passage_checks = hold_passage_checks
        self._held_fill: Callable[[], object] | None = None
        self._index: KnowledgeIndex | None = None
        self.use_index(index)
        self.checkpointer = checkpointer
        self.graph = build_graph(retry_policy=retry_policy or model_retry_policy(
            settings.llm.max_attempts, settings.llm.retry_initial_interval),
            checkpointer=checkpointer)

    @property
    def index(self) -> KnowledgeIndex | None:
        return self._index

    def use_index(self, index: KnowledgeIndex | None) -> None:
        """Swap the index and start checking its chunks in a background thread (PERF-1):
        every passage check is then a lookup; the previous index's checks are reused for
        unchanged chunks, and a chunk not reached yet is checked when it is retrieved.

        Built with `hold_passage_checks` (`serve`), the fill waits for
        `start_passage_checks`: it is seconds of CPU under the GIL for a big index, and run
        during start-up it slowed `serve` to ready by about a second (benchmarks/startup.py)."""
        self._index = index
        self._held_fill = None
        if index is None:
            self.passage_checks = None
            return
        checks = PassageChecks(previous=self.passage_checks)
        texts = [chunk.text for chunk in index.chunks]
        self.passage_checks = checks
        if self._hold_passage_checks:
            self._held_fill = lambda: checks.fill_in_background(texts)
        else:
            checks.fill_in_background(texts)

    def start_passage_checks(self) -> None:
        """Start the passage-check fill held back since construction, and every later one
        at once (`serve` calls it when its health server is up)."""
        self._hold_passage_checks = False
        held, self._held_fill = self._held_fill, None
        if held is not None:
            held()

    def knowledge(self) -> PassageSource | None:
        if self.index is None:
            return None
        cfg = self.settings.retrieval
        embedder = self.embedder if self.spans is None else TracedEmbedder(self.embedder,
                                                                           self.spans)
        base = KnowledgeBase(self.index, embedder, mode=cfg.mode, candidates=cfg.candidates,
                             min_similarity=cfg.min_similarity, min_coverage=cfg.min_coverage)
        return base if self.spans is None else TracedKnowledge(base, self.spans)

    def _query_vector(self, knowledge: PassageSource | None) -> Callable[[str], Any] | None:
        """The embedding head reads vectors of the model it was trained on, nothing else."""
        from guards.semantic import MODEL

        if knowledge is None or Path(self.embedder.model_name).name != MODEL:
            return None
        vector: Callable[[str], Any] | None = getattr(knowledge, "query_vector", None)
        return vector

    def _encoder(self) -> Callable[[], Any] | None:
        if not self.settings.guards.encoder:
            return None
        from guards.encoder import default_encoder

        return default_encoder

    def context(self) -> GraphContext:
        cfg = self.settings
        knowledge = self.knowledge()
        return GraphContext(
            knowledge=knowledge, passage_checks=self.passage_checks,
            query_vector=self._query_vector(knowledge),
            encoder=self._encoder(),
            audit=self.audit, chat_model=self.chat_model,
            model_name=cfg.llm.model or "extractive", breaker=self.breaker,
            top_k=cfg.retrieval.top_k, max_input_chars=cfg.max_input_chars,
            max_attempts=cfg.llm.max_attempts, max_retry_after=cfg.llm.max_retry_after,
            max_reply_chars=cfg.guards.max_reply_chars, canary=self.canary,
            alerts=self.alerts, spans=self.spans or NoSpans())

    @staticmethod
    def thread_id(user: str, chat: str) -> str:
        return f"{user}:{chat}"

    async def forget_thread(self, user: str, chat: str) -> None:
        if self.checkpointer is not None:
            await self.checkpointer.adelete_thread(self.thread_id(user, chat))

    def warm_guards(self) -> None:
        """Build the output guard, and the injection encoder when it is on, at start-up, so
        a broken guard is logged and alerted then rather than found by the first user's
        message (which fails closed), and its first load is not paid inside a run."""
        from guards.output import warm

        warm()
        encoder = self._encoder()
        if encoder is not None:
            encoder()

    def open_index(self, *, endpoint_may_be_down: bool = False) -> None:
        """Load the index (raises KnowledgeIndexError; callers decide degraded or exit)."""
        self.use_index(load_knowledge(self.settings, self.embedder,
                                      endpoint_may_be_down=endpoint_may_be_down))

    async def ask(self, question: str, user_id: str = "local", *, chat: str | None = None,
                  context: GraphContext | None = None) -> Answer:
        """Answer one question; with a checkpointer and a `chat`, the thread (hashed user +
        chat) remembers the last exchanges."""
        user = self.hash_user(user_id)
        config: RunnableConfig = {"run_id": run_id()}  # the audit event's id for this run
        extra: dict[str, Any] = {}
        if self.checkpointer is not None and chat is not None:
            config["configurable"] = {"thread_id": self.thread_id(user, chat)}
            extra["durability"] = "exit"  # one checkpoint per message, not one per node
        result: Mapping[str, Any] = await self.graph.ainvoke(
            {"question": question, "user": user,
             "chat_kind": "local" if chat is None else "dm" if chat == "dm" else "group"},
            config,
            context=context or self.context(), **extra)
        return Answer(reply=result["reply"], citations=list(result.get("citations") or []),
                      fallback_reason=result.get("fallback_reason"),
                      passages=list(result.get("passages") or []))


def _log_breaker(state: BreakerState) -> None:
    log.warning("model_circuit_%s", state.value)


__all__ = ["Answer", "Assistant", "KnowledgeIndexError", "build_chat_model", "build_embedder"]
