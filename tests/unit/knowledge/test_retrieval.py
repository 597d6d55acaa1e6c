from pathlib import Path

from agent.testing.embeddings import HashingEmbedder
from knowledge.index import EmbeddingInfo, open_index
from knowledge.retrieval import KnowledgeBase, Retriever

TEST_MODEL = EmbeddingInfo(provider="test", model="hashing-test", dimension=64)


def _kb(index_dir: Path, **kw: object) -> KnowledgeBase:
    return KnowledgeBase(open_index(index_dir, TEST_MODEL), HashingEmbedder(), **kw)  # type: ignore[arg-type]


def test_hybrid_finds_the_right_document(built_index: Path):
    kb = _kb(built_index)
    assert kb.search("How often should I oil the chain?", 2)[0].chunk.source == "bikes.txt"
    assert kb.search("sourdough starter fermentation", 2)[0].chunk.source == "kitchen.html"


def test_each_mode_ranks(built_index: Path):
    for mode in ("dense", "bm25", "hybrid"):
        kb = _kb(built_index, mode=mode)
        hits = kb.search("tomato plants need sun", 3)
        assert hits and hits[0].chunk.source == "garden.md", mode


def test_relevance_floor_drops_unrelated_questions(built_index: Path):
    kb = _kb(built_index, min_similarity=0.5, min_coverage=0.6)
    assert kb.search("Who won the chess championship in Reykjavik?", 4) == []
    assert kb.search("tyre pressure for road tyres", 4)


def test_coverage_rescues_a_passage_with_every_query_term(built_index: Path):
    retriever = Retriever(open_index(built_index, TEST_MODEL), min_similarity=1.1,
                          min_coverage=0.99)
    query = "compost soil"
    hits = retriever.search(query, HashingEmbedder().embed_query(query), 4)
    assert [h.chunk.source for h in hits] == ["garden.md"]
    assert hits[0].coverage == 1.0


def test_question_words_do_not_count_as_evidence(built_index: Path):
    kb = _kb(built_index, min_similarity=1.1, min_coverage=0.5)
    assert kb.search("What does it mean and how can you tell me?", 4) == []


def test_the_threat_check_and_the_search_share_one_query_embedding(built_index: Path):
    """PERF-1: the embedding head's vector is the one retrieval uses; one call per message."""
    kb = _kb(built_index)
    calls: list[str] = []
    inner = kb.embedder.embed_query

    def counting(text: str):  # type: ignore[no-untyped-def]
        calls.append(text)
        return inner(text)

    kb.embedder.embed_query = counting  # type: ignore[method-assign]
    question = "How often should I oil the chain?"
    assert not kb.has_vector(question)
    vector = kb.query_vector(question)
    assert kb.has_vector(question), "the graph runs retrieval on the event loop then"
    assert not kb.has_vector("sourdough starter fermentation")
    assert kb.search(question, 2)[0].chunk.source == "bikes.txt"
    assert (kb.query_vector(question) == vector).all()
    assert calls == [question]
    kb.search("sourdough starter fermentation", 2)  # another question is embedded anew
    assert calls == [question, "sourdough starter fermentation"]
