"""Retriever configurations the harness can compare in one run.

Three reference configurations reproduce the published rows in the datasets README
exactly as described there (`bm25`: bm25s defaults with the English Snowball stemmer and
stop words; `dense`: all-MiniLM-L6-v2 with inner product over normalised vectors; `rrf`:
reciprocal-rank fusion, k=60, of those two runs at depth 100), each over title + " " + text;
`bm25s:stem=0:stopwords=0:title=0:k1=..:b=..` varies the lexical choices one at a time.
The others run the product's own `knowledge.retrieval.Retriever` over an index written and
reopened by `knowledge.index` exactly as ingest does, so what is measured is what ships.

A configuration is written `name[:key=value[:key=value...]]`; product configurations pass
the keys to `Retriever` (e.g. `hybrid:fusion=rrf:rrf_k=60`), plus `embed_title=0|1`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evals.beir import Dataset
from evals.cache import ProgressCallback, embed_cached
from knowledge.chunking import Chunk, chunk_pages, make_splitter
from knowledge.documents import Page
from knowledge.embeddings import Embedder, Vectors

REFERENCE = ("bm25", "dense", "rrf")
LEXICAL = "bm25s"
PRODUCT = ("hybrid", "product-dense", "product-bm25")
DEFAULT_RETRIEVERS = "bm25,dense,rrf,hybrid"
RRF_K = 60
REFERENCE_DEPTH = 100


class ConfigError(ValueError):
    """A retriever configuration string cannot be understood."""


@dataclass(frozen=True, slots=True)
class RetrieverSpec:
    name: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ":".join([self.name, *(f"{k}={v}" for k, v in self.params.items())])

    @property
    def uses_dense(self) -> bool:
        if self.name in {"bm25", LEXICAL, "product-bm25"}:
            return False
        return self.params.get("mode") != "bm25"


def parse_specs(text: str) -> list[RetrieverSpec]:
    """`bm25,dense,hybrid:fusion=rrf` -> specs; unknown names fail early."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, *pairs = item.split(":")
        if name not in (*REFERENCE, LEXICAL, *PRODUCT):
            raise ConfigError(f"unknown retriever {name!r}; choose from "
                              f"{', '.join((*REFERENCE, LEXICAL, *PRODUCT))}")
        params: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError(f"{item!r}: expected key=value after ':', got {pair!r}")
            params[key.strip()] = value.strip()
        if name in REFERENCE and params:
            raise ConfigError(f"{name!r} reproduces a published row and takes no parameters")
        specs.append(RetrieverSpec(name, params))
    if not specs:
        raise ConfigError("no retriever given")
    return specs


class QueryVectors:
    """Embeds each query once per run and remembers how long that took.

    The product embeds a message once and every dense configuration reuses that vector,
    so each dense configuration's latency is its search time plus this one embedding.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, Vectors] = {}
        self.seconds: dict[str, float] = {}

    def get(self, query_id: str, text: str) -> Vectors:
        if query_id not in self._vectors:
            started = time.perf_counter()
            self._vectors[query_id] = self.embedder.embed_query(text)
            self.seconds[query_id] = time.perf_counter() - started
        return self._vectors[query_id]


class Searcher(Protocol):
    def search(self, query_id: str, text: str, depth: int) -> list[str]:
        """Document ids, best first."""
        ...


def reference_text(title: str, text: str) -> str:
    return f"{title} {text}".strip()


def _top(scores: Any, depth: int) -> list[int]:
    depth = min(depth, len(scores))
    if depth <= 0:
        return []
    top = np.argpartition(-scores, depth - 1)[:depth]
    return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]


class ReferenceBM25:
    """bm25s over title + text; by default its defaults, English Snowball stemmer and its
    English stop words (the published row). The `bm25s` configuration varies these."""

    def __init__(self, dataset: Dataset, *, stem: bool = True, stopwords: bool = True,
                 title: bool = True, k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english") if stem else None
        self._stopwords: str | list[str] = "en" if stopwords else []
        self.ids = list(dataset.corpus)
        texts = [reference_text(d.title if title else "", d.text)
                 for d in dataset.corpus.values()]
        self.model = bm25s.BM25(k1=k1, b=b)
        self.model.index(bm25s.tokenize(texts, stopwords=self._stopwords, stemmer=self._stemmer,
                                        show_progress=False), show_progress=False)

    def search(self, query_id: str, text: str, depth: int) -> list[str]:
        del query_id
        words = self._bm25s.tokenize([text], stopwords=self._stopwords, stemmer=self._stemmer,
                                     return_ids=False, show_progress=False)[0]
        known = [w for w in words if w in self.model.vocab_dict]
        if not known:
            return []
        scores = self.model.get_scores(known)
        return [self.ids[i] for i in _top(scores, depth) if scores[i] > 0]


def lexical_searcher(dataset: Dataset, spec: RetrieverSpec) -> ReferenceBM25:
    """`bm25s:stem=0:stopwords=0:title=0:k1=1.2:b=0.75`: the lexical choices one by one."""
    flags = {"stem": True, "stopwords": True, "title": True}
    numbers = {"k1": 1.5, "b": 0.75}
    for key, value in spec.params.items():
        if key in flags and value in {"0", "1"}:
            flags[key] = value == "1"
        elif key in numbers:
            try:
                numbers[key] = float(value)
            except ValueError as exc:
                raise ConfigError(f"{spec.label}: {key} must be a number") from exc
        else:
            raise ConfigError(f"{spec.label}: bm25s takes stem, stopwords, title (0/1), k1, b")
    return ReferenceBM25(dataset, stem=flags["stem"], stopwords=flags["stopwords"],
                         title=flags["title"], k1=numbers["k1"], b=numbers["b"])


class ReferenceDense:
    """Exact inner product over normalised MiniLM vectors (what FAISS IndexFlatIP computes)."""

    def __init__(self, dataset: Dataset, vectors: Vectors, queries: QueryVectors) -> None:
        self.ids = list(dataset.corpus)
        self.vectors = vectors
        self.queries = queries

    def search(self, query_id: str, text: str, depth: int) -> list[str]:
        scores = self.vectors @ self.queries.get(query_id, text)[0]
        return [self.ids[i] for i in _top(scores, depth)]


class ReferenceRRF:
    """Reciprocal-rank fusion (k=60) of the two reference runs at depth 100 each."""

    def __init__(self, parts: Sequence[Searcher]) -> None:
        self.parts = parts

    def search(self, query_id: str, text: str, depth: int) -> list[str]:
        fused: dict[str, float] = {}
        for part in self.parts:
            for rank, doc in enumerate(part.search(query_id, text, REFERENCE_DEPTH)):
                fused[doc] = fused.get(doc, 0.0) + 1.0 / (RRF_K + rank + 1)
        return [d for d, _ in sorted(fused.items(), key=lambda x: (-x[1], x[0]))][:depth]


def dataset_chunks(dataset: Dataset, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """The corpus as product chunks: whole documents when `chunk_size` is 0, else split
    with the ingest splitter. `Chunk.source` is the document id, so a chunk hit scores as
    its document."""
    if chunk_size <= 0:
        return [Chunk(id=d.id, source=d.id, title=d.title, page=None, text=d.text)
                for d in dataset.corpus.values()]
    splitter = make_splitter(chunk_size, chunk_overlap)
    chunks: list[Chunk] = []
    for doc in dataset.corpus.values():
        chunks.extend(chunk_pages([Page(source=doc.id, title=doc.title, text=doc.text)],
                                  splitter))
    return chunks


@contextmanager
def product_index(chunks: list[Chunk], vectors: Vectors, model: str,
                  embed_title: bool) -> Iterator[Any]:
    """Write and reopen a real index (manifest, FAISS, docstore, BM25) in a temp folder."""
    from knowledge.index import EmbeddingInfo, Manifest, open_index, write_index
    from knowledge.lexical import bm25_tokenize

    info = EmbeddingInfo(provider="local", model=model, dimension=int(vectors.shape[1]))
    with tempfile.TemporaryDirectory(prefix="signal-rag-eval-") as tmp:
        index_dir = Path(tmp) / "index"
        manifest = Manifest(embedding=info, chunk_size=0, chunk_overlap=0,
                            chunk_count=len(chunks), documents={}, embed_title=embed_title)
        write_index(index_dir, manifest, chunks, vectors, bm25_tokenize)
        yield open_index(index_dir, info)


_INT_PARAMS = {"candidates", "rrf_k"}
_STR_PARAMS = {"mode", "fusion"}


def retriever_kwargs(params: dict[str, str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key == "embed_title":
            continue
        if key in _STR_PARAMS:
            kwargs[key] = value
        elif key in _INT_PARAMS:
            kwargs[key] = int(value)
        else:
            try:
                kwargs[key] = float(value)
            except ValueError as exc:
                raise ConfigError(f"{key}={value!r} is not a number") from exc
    return kwargs


class ProductSearcher:
    """The product's `Retriever`; chunk hits are mapped to their document, best first."""

    def __init__(self, index: Any, spec: RetrieverSpec, queries: QueryVectors | None,
                 dimension: int) -> None:
        from knowledge.retrieval import Retriever

        kwargs = retriever_kwargs(spec.params)
        if spec.name == "product-dense":
            kwargs["mode"] = "dense"
        elif spec.name == "product-bm25":
            kwargs["mode"] = "bm25"
        try:
            self.retriever = Retriever(index, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{spec.label}: {exc}") from exc
        self.queries = queries
        self.dimension = dimension
        self.chunks_per_doc = max(1, -(-len(index.chunks) // max(1, len(
            {c.source for c in index.chunks}))))

    def search(self, query_id: str, text: str, depth: int) -> list[str]:
        if self.queries is not None:
            vector = self.queries.get(query_id, text)
        else:  # BM25 only: the vector is unused, so no embedding is paid for
            vector = np.zeros((1, self.dimension), dtype=np.float32)
        hits = self.retriever.search(text, vector, depth * self.chunks_per_doc
                                     if self.chunks_per_doc > 1 else depth)
        return list(dict.fromkeys(hit.chunk.source for hit in hits))[:depth]


EmbedFunction = Callable[[list[str], str], Vectors]
"""(texts, label for the progress bar) -> vectors, cached."""


def cached_embedder(embedder: Embedder, cache_dir: Path | None,
                    progress: Callable[[str], ProgressCallback] | None) -> EmbedFunction:
    def embed(texts: list[str], label: str) -> Vectors:
        vectors, _ = embed_cached(embedder, texts, cache_dir,
                                  progress(label) if progress else None)
        return vectors

    return embed
