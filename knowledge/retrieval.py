"""Dense, BM25 and hybrid retrieval over a loaded index, with a relevance floor.

Hybrid fuses dense and BM25 by default with a convex combination of normalised scores,
weight 0.5 each: on BEIR SciFact it beats reciprocal-rank fusion on the same index
(0.737 against 0.720 nDCG@10, docs/evals.md), and any weight from 0.4 to 0.6 scores
within 0.002, so the choice is not tuned to a knife edge. RRF remains available
(`fusion="rrf"`). Fused scores have no absolute meaning, so the relevance floor uses two
absolute signals: the dense cosine similarity, and the share of the question's content
terms the passage contains. A passage passes when either is high enough (long chunks
dilute the cosine; exact terms catch that); with no passage left the bot says it does
not know instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from knowledge.chunking import Chunk
from knowledge.embeddings import Embedder, Vectors
from knowledge.index import KnowledgeIndex, nearest
from knowledge.lexical import terms

Mode = Literal["dense", "bm25", "hybrid"]
Fusion = Literal["rrf", "convex"]
RRF_K = 60
DEFAULT_FUSION: Fusion = "convex"
DEFAULT_DENSE_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A retrieved passage with the scores that ranked it."""

    chunk: Chunk
    score: float
    """The fused (or single-retriever) score used for ordering."""
    similarity: float
    """Cosine similarity to the query (one of the relevance-floor signals)."""
    coverage: float = 0.0
    """Share of the query's distinct content terms found in the passage."""


class Retriever:
    """Retrieves passages for an already-embedded query (the query is embedded once)."""

    def __init__(self, index: KnowledgeIndex, *, mode: Mode = "hybrid", candidates: int = 50,
                 min_similarity: float = 0.0, min_coverage: float = 0.0,
                 fusion: Fusion = DEFAULT_FUSION, dense_weight: float = DEFAULT_DENSE_WEIGHT,
                 rrf_k: int = RRF_K) -> None:
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be within [0, 1], got {dense_weight}")
        if fusion not in ("rrf", "convex"):
            raise ValueError(f"unknown fusion {fusion!r}: use 'rrf' or 'convex'")
        self.index = index
        self.mode = mode
        self.candidates = candidates
        self.min_similarity = min_similarity
        self.min_coverage = min_coverage
        self.fusion = fusion
        self.dense_weight = dense_weight
        self.rrf_k = rrf_k

    def _dense(self, query_vector: Vectors, limit: int) -> list[int]:
        with _one_thread():
            return nearest(self.index.dense, query_vector, limit)

    def _bm25_scores(self, words: list[str]) -> Any:
        """BM25 score of every chunk for the query's terms (None when nothing can match)."""
        sparse = self.index.sparse
        if sparse is None or not self.index.chunks or not words:
            return None
        known = [w for w in words if w in sparse.vocab_dict]
        return sparse.get_scores(known) if known else None

    @staticmethod
    def _query_terms(query: str) -> list[str]:
        """The query's distinct BM25 terms in order: what `bm25_tokenize` makes of it (the
        same pattern, stop words and stemmer, knowledge/lexical.py), without building
        bm25s's vocabulary for one text (PERF-1)."""
        return list(dict.fromkeys(terms(query)))

    def _term_hits(self, words: list[str]) -> Any:
        """How many distinct query terms each chunk contains, read off the BM25 matrix:
        an array indexed by row, or None when no term is in the index. Counted in NumPy:
        a common term's posting list holds thousands of rows on a large index."""
        sparse = self.index.sparse
        if sparse is None:
            return None
        indices, indptr = sparse.scores["indices"], sparse.scores["indptr"]
        tokens = [token for token in (sparse.vocab_dict.get(word) for word in words)
                  if token is not None]
        if not tokens:
            return None
        rows = np.concatenate([indices[indptr[t]:indptr[t + 1]] for t in tokens])
        return np.bincount(rows, minlength=len(self.index.chunks))

    @staticmethod
    def _sparse(scores: Any, limit: int) -> list[int]:
        if scores is None:
            return []
        limit = min(limit, len(scores))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [int(i) for i in top if scores[i] > 0]

    def _rrf(self, dense: list[int], sparse: list[int]) -> dict[int, float]:
        fused: dict[int, float] = {}
        for weight, ranking in ((self.dense_weight, dense), (1.0 - self.dense_weight, sparse)):
            for rank, row in enumerate(ranking):
                fused[row] = fused.get(row, 0.0) + weight / (self.rrf_k + rank + 1)
        return fused

    def _convex(self, vector: Vectors, dense: list[int], sparse: list[int],
                bm25: Any) -> dict[int, float]:
        """Weighted sum of normalised scores over the union of both candidate lists.

        Both scores are known exactly for every candidate (cosine from the stored vector,
        BM25 from the full score array), so a passage found by one retriever is not
        penalised for falling outside the other's top list. Cosines are min-max scaled
        over the candidates; BM25 is divided by its maximum (its lower bound is 0).
        """
        rows = list(dict.fromkeys(dense + sparse))
        if not rows:
            return {}
        keys = np.asarray(rows, dtype=np.int64)
        cosine = self.index.dense.reconstruct_batch(keys) @ vector[0]
        spread = float(cosine.max() - cosine.min())
        cosine = (cosine - cosine.min()) / spread if spread > 0 else np.ones_like(cosine)
        lexical = np.zeros(len(rows))
        if bm25 is not None:
            lexical = np.asarray(bm25, dtype=np.float64)[keys]
            top = float(lexical.max())
            lexical = lexical / top if top > 0 else lexical
        fused = self.dense_weight * cosine + (1.0 - self.dense_weight) * lexical
        return {row: float(score) for row, score in zip(rows, fused, strict=True)}

    def search(self, query: str, query_vector: Vectors, k: int) -> list[ScoredChunk]:
        """Top `k` passages at or above the relevance floor, best first."""
        vector = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        depth = max(self.candidates, k)
        words = self._query_terms(query)
        if self.mode == "dense":
            ranked = [(i, 1.0 / (RRF_K + r + 1)) for r, i in enumerate(self._dense(vector, depth))]
        elif self.mode == "bm25":
            ranked = [(i, 1.0 / (RRF_K + r + 1))
                      for r, i in enumerate(self._sparse(self._bm25_scores(words), depth))]
        else:
            bm25 = self._bm25_scores(words)
            dense, sparse = self._dense(vector, depth), self._sparse(bm25, depth)
            fused = (self._rrf(dense, sparse) if self.fusion == "rrf"
                     else self._convex(vector, dense, sparse, bm25))
            ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        hits = self._term_hits(words)
        results: list[ScoredChunk] = []
        for row, score in ranked:
            similarity = float(self.index.dense.reconstruct(row) @ vector[0])
            coverage = (int(hits[row]) if hits is not None else 0) / len(words) \
                if words else 0.0
            relevant = similarity >= self.min_similarity or (
                self.min_coverage > 0 and coverage >= self.min_coverage)
            if not relevant:
                continue
            results.append(ScoredChunk(self.index.chunks[row], score, similarity, coverage))
            if len(results) == k:
                break
        return results


@contextmanager
def _one_thread() -> Iterator[None]:
    """faiss's OpenMP team down to the calling thread for one query's search (PERF-1).

    For a single query faiss still starts a team of one thread per core, and every search
    then waits for all of them to be scheduled and spin down: on 2 busy cores a search of
    a 5,000-document index took 6-20 ms instead of the 1 ms it takes alone. The OpenMP
    thread count is per calling thread (its `nthreads-var`), so this changes no other
    thread, and it is restored, so a batch search on this thread keeps its team."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class KnowledgeBase:
    """Embeds the question once and retrieves: what the graph's `retrieve` node calls."""

    def __init__(self, index: KnowledgeIndex, embedder: Embedder, *, mode: Mode = "hybrid",
                 candidates: int = 50, min_similarity: float = 0.0,
                 min_coverage: float = 0.0, fusion: Fusion = DEFAULT_FUSION,
                 dense_weight: float = DEFAULT_DENSE_WEIGHT) -> None:
        self.index = index
        self.embedder = embedder
        self.retriever = Retriever(index, mode=mode, candidates=candidates,
                                   min_similarity=min_similarity, min_coverage=min_coverage,
                                   fusion=fusion, dense_weight=dense_weight)

        self._last: tuple[str, Vectors] | None = None

    def query_vector(self, question: str) -> Vectors:
        """The question's embedding, computed once: the threat check's embedding head and
        the search share it (PERF-1). Only the last question is kept: a knowledge base is
        built per message."""
        last = self._last
        if last is not None and last[0] == question:
            return last[1]
        vector = self.embedder.embed_query(question)
        self._last = (question, vector)
        return vector

    def has_vector(self, question: str) -> bool:
        """Whether `search(question)` would use the kept vector instead of embedding."""
        return self._last is not None and self._last[0] == question

    def search(self, question: str, k: int) -> list[ScoredChunk]:
        return self.retriever.search(question, self.query_vector(question), k)
