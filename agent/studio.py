"""The graph as LangGraph's own tools load it: `langgraph dev`, LangGraph Studio and the
LangGraph API, through `langgraph.json` at the repository root (`make_graph` below).

The server builds a run's context from the request's JSON `context` (a dict coerced into
the graph's context schema: `OfflineContext(**context)`, `{}` when the request sends none).
An index, an embedder or an audit sink cannot travel as JSON, so `OfflineContext` is a
`GraphContext` whose every field has a default, taken from the offline parts, loaded once
per process:

- local ONNX embeddings (the packaged model `make install` exports; a configured OpenAI
  embedder is not used),
- the extractive answerer (no chat model: nothing leaves the machine),
- the configured index when it opens and verifies with those embeddings, else the bundled
  sample documents (examples/knowledge) ingested once into `$DATA_DIR/sample-index`,
- the audit trail in the configured data directory: these runs show in
  `signal-rag graph --from-audit` under the run id the LangGraph API gave them.

A run may still set the plain fields (`top_k`, `max_input_chars`, ...) in its context.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from agent.assistant import Assistant, load_knowledge
from agent.settings import EmbeddingSettings, Settings, load_settings
from graph.builder import build_graph
from graph.context import AuditSink, GraphContext, PassageLookup, PassageSource
from graph.state import GraphInput, GraphOutput, GraphState
from knowledge.index import KnowledgeIndex, KnowledgeIndexError

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "knowledge"
SAMPLE_INDEX = "sample-index"


def offline_settings(settings: Settings) -> Settings:
    """`settings` with the extractive answerer and the local embedding model."""
    embeddings = settings.embeddings if settings.embeddings.provider == "local" \
        else EmbeddingSettings()
    return settings.model_copy(update={
        "llm": settings.llm.model_copy(update={"model": None}), "embeddings": embeddings})


def _index(settings: Settings, assistant: Assistant) -> KnowledgeIndex:
    try:
        return load_knowledge(settings, assistant.embedder)
    except KnowledgeIndexError as exc:
        log.warning("studio_sample_index", extra={"reason": type(exc).__name__})
    from knowledge.ingest import ingest

    if not EXAMPLES.is_dir():
        raise KnowledgeIndexError(f"no usable index at {settings.index_path} and no sample "
                                  f"documents at {EXAMPLES} (run `signal-rag ingest PATH`)")
    sample = settings.data_dir / SAMPLE_INDEX
    ingest(EXAMPLES, sample, assistant.embedder, provider="local")
    return load_knowledge(settings, assistant.embedder, sample)


@functools.cache
def offline_context() -> GraphContext:
    """The offline parts, once per process (the model and the index take seconds)."""
    settings = offline_settings(load_settings())
    assistant = Assistant(settings)
    assistant.index = _index(settings, assistant)
    return assistant.context()


@dataclass(frozen=True, slots=True)
class OfflineContext(GraphContext):
    """A `GraphContext` that a JSON context (or none) can build: the parts default to the
    offline ones."""

    knowledge: PassageSource | None = field(default_factory=lambda: offline_context().knowledge)
    audit: AuditSink = field(default_factory=lambda: offline_context().audit)
    passage_checks: PassageLookup | None = field(
        default_factory=lambda: offline_context().passage_checks)
    query_vector: Callable[[str], Any] | None = field(
        default_factory=lambda: offline_context().query_vector)
    canary: str = field(default_factory=lambda: offline_context().canary)


def make_graph(config: RunnableConfig | None = None
               ) -> CompiledStateGraph[GraphState, GraphContext, GraphInput, GraphOutput]:
    """The factory `langgraph.json` names: the bot's graph with `OfflineContext`. The
    server calls it with the run's config; the graph does not depend on it."""
    offline_context()  # load now: a broken setup fails here, with its reason, not mid-run
    return build_graph(context_schema=OfflineContext)
