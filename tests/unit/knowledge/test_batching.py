"""Concurrent query embeddings are batched; results and errors reach the right callers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agent.testing.embeddings import HashingEmbedder
from knowledge.batching import BatchingEmbedder
from knowledge.embeddings import Vectors


class GatedEmbedder(HashingEmbedder):
    """Blocks the first batch until released, so later callers queue up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.batches_seen: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.batches_seen.append(list(texts))
        if len(self.batches_seen) == 1:
            self.first_started.set()
            assert self.release.wait(5)
        return super().embed_documents(texts)


def test_a_lone_query_is_embedded_at_once_and_equals_the_plain_embedding() -> None:
    inner = HashingEmbedder()
    batching = BatchingEmbedder(inner)
    vector = batching.embed_query("how do I oil a chain")
    assert vector.shape == (1, inner.dimension)
    np.testing.assert_allclose(vector, inner.embed_query("how do I oil a chain"), rtol=1e-6)
    assert batching.batches == 1


def test_queries_arriving_while_a_batch_runs_share_the_next_one() -> None:
    inner = GatedEmbedder()
    batching = BatchingEmbedder(inner)
    texts = [f"question number {i}" for i in range(9)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        first = pool.submit(batching.embed_query, texts[0])
        assert inner.first_started.wait(5)
        rest = [pool.submit(batching.embed_query, text) for text in texts[1:]]
        while len(batching._queue) < 8:  # all eight are waiting behind the first batch
            threading.Event().wait(0.001)
        inner.release.set()
        results = [first.result(5)] + [future.result(5) for future in rest]
    assert inner.batches_seen[0] == [texts[0]]
    assert sorted(inner.batches_seen[1]) == sorted(texts[1:]) and len(inner.batches_seen) == 2
    for text, vector in zip(texts, results, strict=True):
        np.testing.assert_allclose(vector, HashingEmbedder().embed_query(text), rtol=1e-6)


def test_batches_are_capped_and_every_caller_is_served() -> None:
    inner = GatedEmbedder()
    batching = BatchingEmbedder(inner, max_batch=3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(batching.embed_query, "q0")
        assert inner.first_started.wait(5)
        rest = [pool.submit(batching.embed_query, f"q{i}") for i in range(1, 8)]
        while len(batching._queue) < 7:
            threading.Event().wait(0.001)
        inner.release.set()
        assert first.result(5).shape == (1, inner.dimension)
        assert all(future.result(5).shape == (1, inner.dimension) for future in rest)
    assert [len(call) for call in inner.batches_seen] == [1, 3, 3, 1]


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    class Flaky(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.fail = True

        def embed_documents(self, texts: Sequence[str]) -> Vectors:
            if self.fail:
                self.fail = False
                raise RuntimeError("model crashed")
            return super().embed_documents(texts)

    batching = BatchingEmbedder(Flaky())
    with pytest.raises(RuntimeError, match="model crashed"):
        batching.embed_query("first")
    assert batching.embed_query("second").shape[0] == 1


def test_a_wrong_number_of_vectors_is_an_error_not_a_mix_up() -> None:
    class Short(HashingEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> Vectors:
            return super().embed_documents(list(texts)[:-1])

    with pytest.raises(RuntimeError, match="returned 0 vectors for 1"):
        BatchingEmbedder(Short()).embed_query("anything")


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchingEmbedder(HashingEmbedder(), max_batch=0)
