"""Answer-level check: how often the bot's answer cites a document that answers the question.

The documents are ingested for real into a temporary index and every question goes through
the whole graph (sanitize, threat check, retrieve with the relevance floor, generate),
with the offline extractive answerer and, when one is given, a chat model. Only `graph`
and `knowledge` are used, so the dependency arrows stay `evals -> (knowledge, graph)`.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.beir import Dataset
from evals.cache import ProgressCallback

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from evals.runner import ProgressFactory
    from knowledge.embeddings import Embedder


class _NullAudit:
    """The graph audits every run; an evaluation has nothing to keep."""

    def emit(self, event: Mapping[str, Any]) -> None:
        del event


@dataclass(slots=True)
class AnswerRecord:
    query_id: str
    cited: list[str]
    relevant: list[str]
    fallback_reason: str | None


@dataclass(slots=True)
class AnswererResult:
    answerer: str
    questions: int
    cited_relevant: float
    """Share of questions whose answer cites at least one relevant document."""
    first_cited_relevant: float
    """Share whose first citation ([1]) is a relevant document."""
    answered: float
    """Share answered at all (not a fallback such as "I don't know")."""
    records: list[AnswerRecord] = field(default_factory=list)


@dataclass(slots=True)
class AnswersReport:
    dataset: str
    results: list[AnswererResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def result(self, answerer: str) -> AnswererResult:
        return next(r for r in self.results if r.answerer == answerer)


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    """The retrieval settings the bot answers with (the CLI reads the bot's variables)."""

    top_k: int = 4
    candidates: int = 50
    min_similarity: float = 0.3
    min_coverage: float = 0.6
    chunk_size: int = 1000
    chunk_overlap: int = 200


def score_answers(dataset: Dataset, answerer: str,
                  answers: Mapping[str, tuple[list[str], str | None]]) -> AnswererResult:
    """Score (cited sources, fallback reason) per query id against the qrels."""
    records = []
    for query_id in dataset.queries:
        cited, reason = answers.get(query_id, ([], "missing"))
        relevant = sorted(d for d, s in dataset.qrels.get(query_id, {}).items() if s > 0)
        records.append(AnswerRecord(query_id, cited, relevant, reason))
    total = max(1, len(records))
    return AnswererResult(
        answerer=answerer, questions=len(records),
        cited_relevant=sum(any(c in r.relevant for c in r.cited) for r in records) / total,
        first_cited_relevant=sum(bool(r.cited) and r.cited[0] in r.relevant
                                 for r in records) / total,
        answered=sum(r.fallback_reason is None for r in records) / total,
        records=records)


async def _ask_all(dataset: Dataset, knowledge: Any, *, chat_model: BaseChatModel | None,
                   model_name: str, top_k: int,
                   tick: ProgressCallback | None) -> dict[str, tuple[list[str], str | None]]:
    from graph.builder import build_graph
    from graph.context import GraphContext

    graph = build_graph()
    context = GraphContext(knowledge=knowledge, audit=_NullAudit(), chat_model=chat_model,
                           model_name=model_name, top_k=top_k)
    answers: dict[str, tuple[list[str], str | None]] = {}
    for done, (query_id, question) in enumerate(dataset.queries.items(), 1):
        result = await graph.ainvoke({"question": question, "user": "eval"}, context=context)
        cited = [c["source"] for c in result.get("citations") or []]
        answers[query_id] = (cited, result.get("fallback_reason"))
        if tick:
            tick(done, len(dataset.queries))
    return answers


def run_answers(dataset: Dataset, documents: Path, *, embedder: Embedder,
                chat_model: BaseChatModel | None = None, model_name: str = "model",
                settings: AnswerSettings | None = None,
                progress: ProgressFactory | None = None) -> AnswersReport:
    """Ingest `documents`, answer every judged question, score the citations.

    Corpus ids of `dataset` must be the documents' source paths relative to `documents`
    (what citations carry), e.g. `faq.md`.
    """
    from knowledge.index import EmbeddingInfo, open_index
    from knowledge.ingest import ingest
    from knowledge.retrieval import KnowledgeBase

    cfg = settings or AnswerSettings()
    with tempfile.TemporaryDirectory(prefix="signal-rag-answers-") as tmp:
        index_dir = Path(tmp) / "index"
        ingest(documents, index_dir, embedder, provider="eval", chunk_size=cfg.chunk_size,
               chunk_overlap=cfg.chunk_overlap)
        index = open_index(index_dir, EmbeddingInfo("eval", embedder.model_name,
                                                    embedder.dimension))
    knowledge = KnowledgeBase(index, embedder, candidates=cfg.candidates,
                              min_similarity=cfg.min_similarity,
                              min_coverage=cfg.min_coverage)
    answerers: list[tuple[str, BaseChatModel | None]] = [("extractive", None)]
    if chat_model is not None:
        answerers.append((model_name, chat_model))
    results = []
    for name, model in answerers:
        tick = progress(f"answering ({name})") if progress else None
        answers = asyncio.run(_ask_all(dataset, knowledge, chat_model=model, model_name=name,
                                       top_k=cfg.top_k, tick=tick))
        results.append(score_answers(dataset, name, answers))
    return AnswersReport(dataset=dataset.name, results=results)
