"""Dense, BM25 and hybrid retrieval over a loaded index, with a relevance floor.

Hybrid fuses the dense and BM25 rankings with reciprocal-rank fusion (k=60), which on
SciFact beats either alone (see docs/architecture.md). Rank fusion has no absolute scale,
so the relevance floor uses two absolute signals: the dense cosine similarity, and the
share of the question's content terms the passage contains. A passage passes when either
is high enough (long chunks dilute the cosine; exact terms catch that); with no passage
left the bot says it does not know instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from knowledge.chunking import Chunk
from knowledge.embeddings import Embedder, Vectors
from knowledge.index import KnowledgeIndex
from knowledge.lexical import bm25_tokenize

Mode = Literal["dense", "bm25", "hybrid"]
RRF_K = 60


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
                 min_similarity: float = 0.0, min_coverage: float = 0.0) -> None:
        self.index = index
        self.mode = mode
        self.candidates = candidates
        self.min_similarity = min_similarity
        self.min_coverage = min_coverage

    def _dense(self, query_vector: Vectors, limit: int) -> list[int]:
        if self.index.dense.ntotal == 0:
            return []
        _, ids = self.index.dense.search(query_vector, min(limit, self.index.dense.ntotal))
        return [int(i) for i in ids[0] if i >= 0]

    @staticmethod
    def _query_terms(query: str) -> list[str]:
        tokens = bm25_tokenize([query])
        vocab = {token_id: word for word, token_id in tokens.vocab.items()}
        return list(dict.fromkeys(vocab[t] for t in tokens.ids[0]))

    def _term_hits(self, words: list[str]) -> dict[int, int]:
        """How many distinct query terms each chunk contains, read off the BM25 matrix."""
        sparse = self.index.sparse
        hits: dict[int, int] = {}
        if sparse is None:
            return hits
        indices, indptr = sparse.scores["indices"], sparse.scores["indptr"]
        for word in words:
            token = sparse.vocab_dict.get(word)
            if token is None:
                continue
            for row in indices[indptr[token]:indptr[token + 1]]:
                hits[int(row)] = hits.get(int(row), 0) + 1
        return hits

    def _sparse(self, words: list[str], limit: int) -> list[int]:
        sparse = self.index.sparse
        if sparse is None or not self.index.chunks or not words:
            return []
        known = [w for w in words if w in sparse.vocab_dict]
        if not known:
            return []
        scores = sparse.get_scores(known)
        limit = min(limit, len(scores))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [int(i) for i in top if scores[i] > 0]

    def search(self, query: str, query_vector: Vectors, k: int) -> list[ScoredChunk]:
        """Top `k` passages at or above the relevance floor, best first."""
        vector = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        depth = max(self.candidates, k)
        words = self._query_terms(query)
        if self.mode == "dense":
            ranked = [(i, 1.0 / (RRF_K + r + 1)) for r, i in enumerate(self._dense(vector, depth))]
        elif self.mode == "bm25":
            ranked = [(i, 1.0 / (RRF_K + r + 1)) for r, i in enumerate(self._sparse(words, depth))]
        else:
            fused: dict[int, float] = {}
            for ranking in (self._dense(vector, depth), self._sparse(words, depth)):
                for rank, row in enumerate(ranking):
                    fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
            ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        hits = self._term_hits(words)
        results: list[ScoredChunk] = []
        for row, score in ranked:
            similarity = float(self.index.dense.reconstruct(row) @ vector[0])
            coverage = hits.get(row, 0) / len(words) if words else 0.0
            relevant = similarity >= self.min_similarity or (
                self.min_coverage > 0 and coverage >= self.min_coverage)
            if not relevant:
                continue
            results.append(ScoredChunk(self.index.chunks[row], score, similarity, coverage))
            if len(results) == k:
                break
        return results


class KnowledgeBase:
    """Embeds the question once and retrieves: what the graph's `retrieve` node calls."""

    def __init__(self, index: KnowledgeIndex, embedder: Embedder, *, mode: Mode = "hybrid",
                 candidates: int = 50, min_similarity: float = 0.0,
                 min_coverage: float = 0.0) -> None:
        self.index = index
        self.embedder = embedder
        self.retriever = Retriever(index, mode=mode, candidates=candidates,
                                   min_similarity=min_similarity, min_coverage=min_coverage)

    def search(self, question: str, k: int) -> list[ScoredChunk]:
        return self.retriever.search(question, self.embedder.embed_query(question), k)
