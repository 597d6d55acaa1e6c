"""Concurrent query embeddings, computed together (PERF-2).

The bot answers many users at once, and each question's embedding is one small forward
pass of the local model. Run one by one from several threads, they compete for the same
two cores and each pays the fixed per-call cost; run as one batch, twenty questions cost
little more than two. This wrapper batches naturally, adding no wait: the first caller
embeds its question at once, and whatever queued up meanwhile goes in the next batch
(the group-commit pattern). Written here because no embedding library batches calls
that arrive concurrently from different threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import Embedder, EmbedderWrapper, Vectors

DEFAULT_MAX_BATCH = 32


@dataclass(slots=True)
class _Request:
    text: str
    vector: Vectors | None = None
    error: BaseException | None = None
    done: bool = False


class BatchingEmbedder(EmbedderWrapper):
    """An `Embedder` whose `embed_query` batches concurrent calls; the rest delegates.

    Use it only with models that embed a query exactly as a document (no query prefix or
    instruction), such as all-MiniLM-L6-v2: the batch goes through `embed_documents`.
    """

    def __init__(self, inner: Embedder, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        super().__init__(inner)
        self.max_batch = max_batch
        self.batches = 0
        """Forward passes made for queries (for tests and benchmarks)."""
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False

    def embed_query(self, text: str) -> Vectors:
        request = _Request(text)
        with self._cond:
            self._queue.append(request)
            while True:
                while self._busy and not request.done:
                    self._cond.wait()
                if request.done:
                    return self._result(request)
                # Nobody is embedding: this thread runs the next batch (its own request
                # is in it unless more than `max_batch` were already waiting).
                self._busy = True
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, batch: list[_Request]) -> None:
        try:
            vectors = self.inner.embed_documents([r.text for r in batch])
            if vectors.shape[0] != len(batch):
                raise RuntimeError(f"embedder returned {vectors.shape[0]} vectors "
                                   f"for {len(batch)} queries")
        except BaseException as exc:  # noqa: BLE001 - each waiting caller gets it, not a hang
            for request in batch:
                request.error, request.done = exc, True
            return
        finally:
            self.batches += 1
        for row, request in enumerate(batch):
            request.vector = np.ascontiguousarray(vectors[row:row + 1])
            request.done = True

    @staticmethod
    def _result(request: _Request) -> Vectors:
        if request.error is not None:
            raise request.error
        assert request.vector is not None
        return request.vector
