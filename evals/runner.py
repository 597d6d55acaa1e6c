"""Run several retriever configurations over one BEIR dataset and score them.

Each configuration is searched twice per query: at depth k, timed, exactly as the bot would
ask (the top-k metrics come from that call), and at depth 100 for recall@100, untimed.
Latency of a configuration that uses the dense model includes the query embedding.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.beir import Dataset
from evals.cache import ProgressCallback
from evals.metrics import evaluate, percentile_ms
from evals.retrievers import (
    LEXICAL,
    REFERENCE,
    ConfigError,
    ProductSearcher,
    QueryVectors,
    ReferenceBM25,
    ReferenceDense,
    ReferenceRRF,
    RetrieverSpec,
    Searcher,
    cached_embedder,
    dataset_chunks,
    lexical_searcher,
    product_index,
    reference_text,
)
from knowledge.embeddings import Embedder

DEEP = 100

ProgressFactory = Callable[[str], ProgressCallback]
"""label -> callback(done, total): one progress bar per embedding or query loop."""


@dataclass(slots=True)
class RetrieverResult:
    retriever: str
    ndcg: float
    recall: float
    recall_100: float
    mrr: float
    latency_p50_ms: float
    latency_p95_ms: float
    search_p50_ms: float
    """The same without the query embedding: the retriever's own cost."""
    search_p95_ms: float
    queries: int
    seconds: float
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(slots=True)
class RetrievalReport:
    dataset: str
    split: str
    k: int
    documents: int
    queries: int
    chunk_size: int
    chunk_overlap: int
    embedding_model: str
    results: list[RetrieverResult]
    seconds: float = 0.0
    created_at: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, per_query: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not per_query:
            for row in data["results"]:
                row.pop("per_query", None)
        return data

    def result(self, retriever: str) -> RetrieverResult:
        for row in self.results:
            if row.retriever == retriever:
                return row
        raise KeyError(retriever)


def _product_embed_title(spec: RetrieverSpec) -> bool | None:
    value = spec.params.get("embed_title")
    if value is None:
        return None
    if value not in {"0", "1"}:
        raise ConfigError(f"{spec.label}: embed_title must be 0 or 1")
    return value == "1"


def _loop(label: str, total: int, progress: ProgressFactory | None) -> ProgressCallback | None:
    if progress is None:
        return None
    callback = progress(label)
    callback(0, total)
    return callback


def run_retrieval(dataset: Dataset, specs: list[RetrieverSpec], *, embedder: Embedder,
                  k: int = 10, cache_dir: Path | None = None, chunk_size: int = 0,
                  chunk_overlap: int = 0, progress: ProgressFactory | None = None
                  ) -> RetrievalReport:
    """Score every configuration on every judged query of `dataset`."""
    from knowledge.ingest import EMBED_TITLE, embedding_text

    started = time.perf_counter()
    embed = cached_embedder(embedder, cache_dir, progress)
    queries = QueryVectors(embedder)
    searchers: dict[str, Searcher] = {}
    with ExitStack() as stack:
        reference: dict[str, Searcher] = {}

        def ref(name: str) -> Searcher:
            if name not in reference:
                if name == "bm25":
                    reference[name] = ReferenceBM25(dataset)
                elif name == "dense":
                    texts = [reference_text(d.title, d.text) for d in dataset.corpus.values()]
                    reference[name] = ReferenceDense(
                        dataset, embed(texts, "embedding corpus (title + text)"), queries)
                else:
                    reference[name] = ReferenceRRF([ref("dense"), ref("bm25")])
            return reference[name]

        chunks = dataset_chunks(dataset, chunk_size, chunk_overlap)
        indexes: dict[bool | None, Any] = {}
        # Dense configurations first: a BM25-only one can then reuse their index, whose
        # vectors it never reads, instead of embedding the corpus for nothing.
        for spec in sorted(specs, key=lambda s: not s.uses_dense):
            if spec.name in REFERENCE:
                searchers[spec.label] = ref(spec.name)
                continue
            if spec.name == LEXICAL:
                searchers[spec.label] = lexical_searcher(dataset, spec)
                continue
            title = _product_embed_title(spec)
            if not spec.uses_dense and title not in indexes and indexes:
                title = next(iter(indexes))
            if title not in indexes:
                texts = [embedding_text(c, title=title) for c in chunks]
                vectors = embed(texts, "embedding chunks")
                indexes[title] = stack.enter_context(product_index(
                    chunks, vectors, embedder.model_name,
                    EMBED_TITLE if title is None else title))
            searchers[spec.label] = ProductSearcher(
                indexes[title], spec, queries if spec.uses_dense else None, embedder.dimension)
        results = [_score(dataset, spec, searchers[spec.label], queries=queries, k=k,
                          progress=progress)
                   for spec in specs]
    return RetrievalReport(
        dataset=dataset.name, split=dataset.split, k=k, documents=len(dataset.corpus),
        queries=len(dataset.queries), chunk_size=chunk_size, chunk_overlap=chunk_overlap,
        embedding_model=embedder.model_name, results=results,
        seconds=time.perf_counter() - started, created_at=time.time(),
        machine={"python": platform.python_version(), "machine": platform.machine(),
                 "processor": platform.processor() or platform.machine()})


def _score(dataset: Dataset, spec: RetrieverSpec, searcher: Searcher, *, queries: QueryVectors,
           k: int, progress: ProgressFactory | None) -> RetrieverResult:
    started = time.perf_counter()
    tick = _loop(spec.label, len(dataset.queries), progress)
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    searches: list[float] = []
    for done, (query_id, text) in enumerate(_items(dataset), 1):
        if spec.uses_dense:
            queries.get(query_id, text)  # embedded once per run, its time added below
        began = time.perf_counter()
        top = searcher.search(query_id, text, k)
        latency = time.perf_counter() - began
        searches.append(latency)
        if spec.uses_dense:
            latency += queries.seconds[query_id]
        latencies.append(latency)
        deep = searcher.search(query_id, text, DEEP) if k < DEEP else []
        run[query_id] = list(dict.fromkeys(top + deep))
        if tick:
            tick(done, len(dataset.queries))
    scores = evaluate(dataset.qrels, run, k)
    return RetrieverResult(
        retriever=spec.label, ndcg=scores.ndcg, recall=scores.recall,
        recall_100=scores.recall_100, mrr=scores.mrr,
        latency_p50_ms=percentile_ms(latencies, 50), latency_p95_ms=percentile_ms(latencies, 95),
        search_p50_ms=percentile_ms(searches, 50), search_p95_ms=percentile_ms(searches, 95),
        queries=len(run), seconds=time.perf_counter() - started, per_query=scores.per_query)


def _items(dataset: Dataset) -> Iterator[tuple[str, str]]:
    yield from dataset.queries.items()
