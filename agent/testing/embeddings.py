"""A deterministic bag-of-words embedder: similar texts get similar vectors, no model load.

Used by unit tests that need meaningful cosine similarities without torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from knowledge.embeddings import Vectors, normalise
from knowledge.lexical import terms


class HashingEmbedder:
    def __init__(self, dimension: int = 64, model_name: str = "hashing-test") -> None:
        self._dimension = dimension
        self._model_name = model_name
        self.calls = 0
        self.texts_embedded = 0

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def _one(self, text: str) -> np.ndarray:
        vector = np.zeros(self._dimension, dtype=np.float32)
        for term in terms(text) or ["<empty>"]:
            bucket = int(hashlib.md5(term.encode()).hexdigest(), 16) % self._dimension
            vector[bucket] += 1.0
        return vector

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.texts_embedded += len(texts)
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return normalise(np.vstack([self._one(t) for t in texts]))

    def embed_query(self, text: str) -> Vectors:
        return normalise(self._one(text))
