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


def test_term_hits_count_the_distinct_query_terms_of_each_chunk(built_index: Path):
    """The vectorised count equals a plain walk over the BM25 posting lists."""
    retriever = Retriever(open_index(built_index, TEST_MODEL))
    sparse = retriever.index.sparse
    indices, indptr = sparse.scores["indices"], sparse.scores["indptr"]
    words = retriever._query_terms("compost soil for tomato plants and the bike chain")
    expected: dict[int, int] = {}
    for word in words:
        token = sparse.vocab_dict.get(word)
        for row in [] if token is None else indices[indptr[token]:indptr[token + 1]]:
            expected[int(row)] = expected.get(int(row), 0) + 1
    hits = retriever._term_hits(words)
    assert expected
    assert {row: int(n) for row, n in enumerate(hits) if n} == expected
    assert retriever._term_hits(["zzzunknownzzz"]) is None


def test_a_query_searches_faiss_with_one_thread_and_restores_the_team(built_index: Path):
    """PERF-1: one query's dense search runs on the calling thread only (a team of one
    per core waits for every core); the thread's OpenMP setting is put back after."""
    import faiss

    retriever = Retriever(open_index(built_index, TEST_MODEL), mode="dense")
    inner = retriever.index.dense
    seen: list[int] = []

    class Recording:
        ntotal = inner.ntotal

        def search(self, vector, k, params=None):  # type: ignore[no-untyped-def]
            seen.append(faiss.omp_get_max_threads())
            return inner.search(vector, k, params=params)

        def reconstruct(self, row):  # type: ignore[no-untyped-def]
            return inner.reconstruct(row)

    retriever.index.dense = Recording()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)
    try:
        query = "compost soil"
        assert retriever.search(query, HashingEmbedder().embed_query(query), 2)
        assert seen == [1]
        assert faiss.omp_get_max_threads() == 3
    finally:
        faiss.omp_set_num_threads(before)


def test_query_terms_are_what_bm25_tokenize_makes_of_the_query():
    """The BM25 query terms come from `lexical.terms`; they must stay the distinct terms
    bm25s's tokenizer (the one the index was built with) gives, in the same order."""
    from knowledge.lexical import bm25_tokenize

    queries = ["How often should I oil the chain?", "What does exit code 3 mean?",
               "Tomatoes, TOMATO plants and tomato-plant care in the GARDEN garden",
               "0-dimensional biomaterials show inductive properties.", "the of and", "",
               "Ünïcode wörds: naïve café résumé 42 x y z", "a b c 1 2 3 running runs ran"]
    for query in queries:
        tokens = bm25_tokenize([query])
        vocab = {token_id: word for word, token_id in tokens.vocab.items()}
        expected = list(dict.fromkeys(vocab[t] for t in tokens.ids[0]))
        assert Retriever._query_terms(query) == expected, query
