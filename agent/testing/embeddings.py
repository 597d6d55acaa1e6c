"""A deterministic bag-of-words embedder: similar texts get similar vectors, no model load.

Used by unit tests that need meaningful cosine similarities without torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from knowledge.embeddings import Vectors, normalise
from knowledge.lexical import terms


@dataclass(eq=False)
class HashingEmbedder:
    dimension: int = 64
    model_name: str = "hashing-test"
    calls: int = field(default=0, init=False)
    texts_embedded: int = field(default=0, init=False)

    def _one(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        for term in terms(text) or ["<empty>"]:
            bucket = int(hashlib.md5(term.encode()).hexdigest(), 16) % self.dimension
            vector[bucket] += 1.0
        return vector

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.texts_embedded += len(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return normalise(np.vstack([self._one(t) for t in texts]))

    def embed_query(self, text: str) -> Vectors:
        return normalise(self._one(text))
