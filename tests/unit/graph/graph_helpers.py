"""Fakes for graph tests: a fixed passage source and a runtime with the given context."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.audit import MemoryAuditSink
from graph.context import GraphContext
from knowledge.chunking import Chunk
from knowledge.retrieval import ScoredChunk


class FixedKnowledge:
    def __init__(self, *texts: tuple[str, str], fail: Exception | None = None) -> None:
        self.hits = [ScoredChunk(Chunk(id=str(i), source=src, title=src.split(".")[0].title(),
                                       page=None, text=text), 1.0 / (i + 1), 0.8)
                     for i, (src, text) in enumerate(texts)]
        self.fail = fail
        self.questions: list[str] = []

    def search(self, question: str, k: int) -> list[ScoredChunk]:
        self.questions.append(question)
        if self.fail:
            raise self.fail
        return self.hits[:k]


GUIDE = ("guide.md", "After 5 wrong passphrase attempts you are locked out for 1 hour. "
                     "The bot answers in groups only when mentioned.")
FAQ = ("faq.md", "The default chunk size is 1000 characters with 200 characters of overlap.")


def context(**overrides: Any) -> GraphContext:
    values: dict[str, Any] = {"knowledge": FixedKnowledge(GUIDE, FAQ),
                              "audit": MemoryAuditSink()}
    values.update(overrides)
    return GraphContext(**values)


def runtime(ctx: GraphContext | None = None) -> Runtime[GraphContext]:
    return Runtime(context=ctx or context())
