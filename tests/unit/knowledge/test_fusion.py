"""Hybrid fusion options and title embedding (the defaults chosen on SciFact, docs/evals.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import knowledge.ingest
from agent.testing.embeddings import HashingEmbedder
from knowledge.index import EmbeddingInfo, open_index
from knowledge.ingest import embedding_text, ingest
from knowledge.retrieval import DEFAULT_DENSE_WEIGHT, DEFAULT_FUSION, Retriever

TEST_MODEL = EmbeddingInfo(provider="test", model="hashing-test", dimension=64)


def _search(index_dir: Path, query: str, **kw: object) -> list[str]:
    retriever = Retriever(open_index(index_dir, TEST_MODEL), **kw)  # type: ignore[arg-type]
    return [h.chunk.source for h in retriever.search(query, HashingEmbedder().embed_query(query),
                                                     3)]


def test_defaults_are_the_measured_winner():
    assert (DEFAULT_FUSION, DEFAULT_DENSE_WEIGHT) == ("convex", 0.5)
    assert knowledge.ingest.EMBED_TITLE is True


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_both_fusions_rank_the_obvious_document_first(built_index: Path, fusion: str):
    assert _search(built_index, "oil the bicycle chain", fusion=fusion)[0] == "bikes.txt"
    assert _search(built_index, "sourdough starter", fusion=fusion)[0] == "kitchen.html"


def test_convex_weight_one_is_pure_dense_order(built_index: Path):
    query = "tomato plants need sun"
    dense = _search(built_index, query, mode="dense")
    assert _search(built_index, query, fusion="convex", dense_weight=1.0) == dense


def test_convex_scores_are_normalised(built_index: Path):
    retriever = Retriever(open_index(built_index, TEST_MODEL), fusion="convex")
    query = "tyre pressure"
    hits = retriever.search(query, HashingEmbedder().embed_query(query), 3)
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert hits[0].score == max(h.score for h in hits)


def test_bad_fusion_settings_are_refused(built_index: Path):
    index = open_index(built_index, TEST_MODEL)
    with pytest.raises(ValueError, match="dense_weight"):
        Retriever(index, dense_weight=1.5)
    with pytest.raises(ValueError, match="fusion"):
        Retriever(index, fusion="max")  # type: ignore[arg-type]


def test_title_is_embedded_with_the_text():
    from knowledge.chunking import Chunk

    chunk = Chunk(id="1", source="a.md", title="Bread", page=None, text="Bake at 230 degrees.")
    assert embedding_text(chunk) == "Bread Bake at 230 degrees."
    assert embedding_text(chunk, title=False) == "Bake at 230 degrees."


def test_an_index_embedded_without_titles_is_re_embedded_once(
        docs_dir: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(knowledge.ingest, "EMBED_TITLE", False)
    old = ingest(docs_dir, index_dir, HashingEmbedder(), provider="test", chunk_size=200,
                 chunk_overlap=40)
    assert not open_index(index_dir, TEST_MODEL).manifest.embed_title
    monkeypatch.setattr(knowledge.ingest, "EMBED_TITLE", True)
    upgraded = ingest(docs_dir, index_dir, HashingEmbedder(), provider="test", chunk_size=200,
                      chunk_overlap=40)
    assert upgraded.chunks_embedded == upgraded.chunks_total == old.chunks_total
    assert open_index(index_dir, TEST_MODEL).manifest.embed_title
    again = ingest(docs_dir, index_dir, HashingEmbedder(), provider="test", chunk_size=200,
                   chunk_overlap=40)
    assert again.chunks_embedded == 0 and again.unchanged == 3
