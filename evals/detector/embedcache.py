"""Sentence embeddings of evaluation and training texts, cached on disk by text hash.

Embedding the ~10,000 corpus texts with all-MiniLM-L6-v2 takes minutes on 2 cores; the
leave-one-source-out evaluation and the trainer of the embedding head need them many times.
The cache (`~/.cache/signal-rag/embeddings-<model>.npz`, or `SIGNAL_RAG_EMBED_CACHE`) maps the
sha256 of a text to its vector; it holds no text. Any `knowledge.embeddings.Embedder` works.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder, Vectors


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_path(model: str) -> Path:
    env = os.environ.get("SIGNAL_RAG_EMBED_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "signal-rag"
    return base / f"embeddings-{Path(model).name}.npz"


def embed(texts: Sequence[str], embedder: Embedder | None = None, batch: int = 256) -> Vectors:
    """Vectors of `texts` in order, computing only those not cached yet."""
    if embedder is None:
        from knowledge.embeddings import LocalEmbedder

        embedder = LocalEmbedder()
    path = cache_path(embedder.model_name)
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as stored:
            known = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
    keys = [_key(t) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items(),
                     key=lambda kv: len(kv[1]))
    for start in range(0, len(missing), batch):
        part = missing[start:start + batch]
        vectors = embedder.embed_documents([t for _k, t in part])
        known.update(zip([k for k, _t in part], vectors, strict=True))
        if (start // batch) % 8 == 7 or start + batch >= len(missing):
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[k] for k in keys]).astype(np.float32) if keys else \
        np.zeros((0, embedder.dimension), dtype=np.float32)
