"""The dense index: exact for a small collection, HNSW above EXACT_SEARCH_LIMIT chunks,
searched through `nearest`, and refused when the file holds any other kind of index."""

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

import knowledge.index as index_module
from agent.testing.embeddings import HashingEmbedder
from knowledge.chunking import Chunk
from knowledge.documents import file_sha256
from knowledge.index import (
    DENSE_FILE,
    MANIFEST,
    EmbeddingInfo,
    IndexCorruptError,
    Manifest,
    nearest,
    open_index,
    write_index,
)
from knowledge.ingest import ingest
from knowledge.lexical import bm25_tokenize
from knowledge.retrieval import Retriever

DIMENSION = 32
INFO = EmbeddingInfo(provider="test", model="random", dimension=DIMENSION)


def _vectors(rows: int, seed: int = 7) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _write(index_dir: Path, vectors: np.ndarray) -> None:
    chunks = [Chunk(id=f"c{i}", source=f"doc{i}.txt", title=f"doc {i}", page=None,
                    text=f"passage number {i} about topic {i % 17}")
              for i in range(len(vectors))]
    manifest = Manifest(embedding=INFO, chunk_size=0, chunk_overlap=0, chunk_count=len(chunks),
                        documents={})
    write_index(index_dir, manifest, chunks, vectors, bm25_tokenize)


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-(vectors @ query[0]), kind="stable")[:k]]


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """A limit low enough that a test-sized collection gets the graph index."""
    monkeypatch.setattr(index_module, "EXACT_SEARCH_LIMIT", 100)
    return 100


def test_a_small_collection_is_searched_exactly(tmp_path: Path):
    vectors = _vectors(60)
    _write(tmp_path / "index", vectors)
    index = open_index(tmp_path / "index", INFO)
    assert isinstance(index.dense, faiss.IndexFlatIP)
    query = _vectors(1, seed=99)
    assert nearest(index.dense, query, 10) == _exact(vectors, query, 10)


def test_a_large_collection_gets_a_graph_index_that_finds_the_exact_neighbours(
        tmp_path: Path, small_limit: int):
    vectors = _vectors(600)
    _write(tmp_path / "index", vectors)
    index = open_index(tmp_path / "index", INFO)
    assert isinstance(index.dense, faiss.IndexHNSWFlat)
    assert index.dense.ntotal == 600
    # Re-ingest reuses the stored vectors: they come back as written.
    np.testing.assert_allclose(index.vectors(), vectors, atol=1e-6)
    queries = _vectors(20, seed=3)
    found = [len(set(nearest(index.dense, q[None, :], 10)) & set(_exact(vectors, q[None, :], 10)))
             for q in queries]
    assert sum(found) / (10 * len(queries)) >= 0.95


def test_a_deep_search_on_the_graph_index_is_as_deep_as_asked(tmp_path: Path,
                                                              small_limit: int):
    """Asked for more rows than HNSW_EF_SEARCH, the search widens instead of returning a
    tail of poor guesses."""
    vectors = _vectors(600)
    _write(tmp_path / "index", vectors)
    index = open_index(tmp_path / "index", INFO)
    query = _vectors(1, seed=5)
    depth = index_module.HNSW_EF_SEARCH + 100
    rows = nearest(index.dense, query, depth)
    assert len(rows) == depth == len(set(rows))
    assert len(set(rows) & set(_exact(vectors, query, depth))) / depth >= 0.9


def test_an_unchanged_collection_writes_the_same_graph_index(tmp_path: Path,
                                                             small_limit: int):
    vectors = _vectors(400)
    _write(tmp_path / "a", vectors)
    _write(tmp_path / "b", vectors)
    assert file_sha256(tmp_path / "a" / DENSE_FILE) == file_sha256(tmp_path / "b" / DENSE_FILE)


def test_retrieval_over_the_graph_index_ranks_the_nearest_passage_first(tmp_path: Path,
                                                                       small_limit: int):
    vectors = _vectors(300)
    _write(tmp_path / "index", vectors)
    retriever = Retriever(open_index(tmp_path / "index", INFO), mode="dense",
                          min_similarity=-1.0)
    hits = retriever.search("anything", vectors[42:43], 3)
    assert hits[0].chunk.id == "c42"
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("foreign", [lambda: faiss.IndexFlatL2(DIMENSION),
                                     lambda: faiss.IndexHNSWFlat(DIMENSION, 8)],
                         ids=["flat-l2", "hnsw-l2"])
def test_another_kind_of_faiss_index_is_refused(tmp_path: Path, foreign):
    """A dense file whose manifest hash matches but which holds another index type (a
    hand-edited or foreign index) would silently rank by the wrong metric."""
    vectors = _vectors(50)
    index_dir = tmp_path / "index"
    _write(index_dir, vectors)
    other = foreign()
    other.add(vectors)
    faiss.write_index(other, str(index_dir / DENSE_FILE))
    manifest = json.loads((index_dir / MANIFEST).read_text())
    manifest["files"][DENSE_FILE] = file_sha256(index_dir / DENSE_FILE)
    (index_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match=r"dense\.faiss.*not an inner-product"):
        open_index(index_dir, INFO)


def test_the_next_ingest_rewrites_an_older_kind_of_index_without_embedding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An index written before the graph index existed (or one that grew past the limit)
    becomes the current kind on the next ingest, from its stored vectors."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i}.txt").write_text(f"Document {i} is about subject {i}. " * 4)
    embedder = HashingEmbedder()
    ingest(docs, index_dir, embedder, provider="test")
    assert isinstance(open_index(index_dir).dense, faiss.IndexFlatIP)
    flat_vectors = open_index(index_dir).vectors()

    monkeypatch.setattr(index_module, "EXACT_SEARCH_LIMIT", 10)
    report = ingest(docs, index_dir, embedder, provider="test")
    assert report.chunks_embedded == 0
    rewritten = open_index(index_dir)
    assert isinstance(rewritten.dense, faiss.IndexHNSWFlat)
    np.testing.assert_allclose(rewritten.vectors(), flat_vectors, atol=1e-6)

    written_at = json.loads((index_dir / MANIFEST).read_text())["created_at"]
    ingest(docs, index_dir, embedder, provider="test")
    assert json.loads((index_dir / MANIFEST).read_text())["created_at"] == written_at
