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

A run may set `top_k`, `max_input_chars` and `max_reply_chars` in its context (`RunContext`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

from agent.assistant import Assistant, load_knowledge
from agent.settings import EmbeddingSettings, Settings, load_settings
from agent.wiring import build_assistant
from graph.builder import build_graph
from graph.context import GraphContext
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
    assistant = build_assistant(settings)
    assistant.use_index(_index(settings, assistant))
    return assistant.context()


class RunContext(BaseModel):
    """What a run may set in its JSON context (Studio shows this as the context form);
    anything else is refused, so a request cannot swap the index or the audit sink."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    top_k: int = Field(4, ge=1, le=20, description="passages retrieved per question")
    max_input_chars: int = Field(2000, ge=1, le=100_000,
                                 description="longer questions get the too_long fallback")
    max_reply_chars: int = Field(8000, ge=100, le=100_000,
                                 description="the output guard's cap on a whole reply")


class OfflineContext(GraphContext):
    """The context schema LangGraph's server sees. It builds the context as
    `OfflineContext(**json)`: here that is the offline context with the `RunContext` fields
    of the request (validated; unknown keys raise), and its JSON schema is `RunContext`'s."""

    def __new__(cls, **run: Any) -> OfflineContext:
        values = RunContext(**run).model_dump()
        base = offline_context()
        self = object.__new__(cls)
        for item in fields(GraphContext):  # frozen: set once, here
            object.__setattr__(self, item.name, values.get(item.name,
                                                           getattr(base, item.name)))
        return self

    def __init__(self, **run: Any) -> None:
        """Everything was set by `__new__`."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda run: cls(**run.model_dump()), handler(RunContext))


async def make_graph(config: RunnableConfig | None = None
                     ) -> CompiledStateGraph[GraphState, GraphContext, GraphInput, GraphOutput]:
    """The factory `langgraph.json` names: the bot's graph with `OfflineContext`. The
    server calls it with the run's config (unused) on its event loop, so the offline parts
    load in a thread; a broken setup fails here, with its reason, not in the middle of a run."""
    await asyncio.to_thread(offline_context)
    return build_graph(context_schema=OfflineContext)
