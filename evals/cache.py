"""Document embeddings cached on disk, keyed by model name and a hash of the embedded texts.

Embedding SciFact's 5,183 abstracts takes minutes on 2 cores; a second run with the same
model and the same texts must not pay that again. The key hashes the exact texts (so a
change of title handling or of the corpus is a new key) and the file is a plain `.npy`
array loaded with `allow_pickle=False`. Written to a temp name and renamed, so an
interrupted run never leaves a truncated cache behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from knowledge.embeddings import Embedder, Vectors

ProgressCallback = Callable[[int, int], None]
"""Called as (texts embedded so far, texts to embed)."""

BATCH = 64


def texts_hash(texts: Sequence[str]) -> str:
    """sha256 over the texts in order, each length-prefixed so boundaries are unambiguous."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_path(cache_dir: Path, model_name: str, texts: Sequence[str]) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("_")[-60:] or "model"
    model_key = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    return cache_dir / f"{slug}-{model_key}-{texts_hash(texts)[:32]}.npy"


def embed_cached(embedder: Embedder, texts: Sequence[str], cache_dir: Path | None,
                 progress: ProgressCallback | None = None) -> tuple[Vectors, bool]:
    """Vectors for `texts` in order, and whether they came from the cache."""
    path = cache_path(cache_dir, embedder.model_name, texts) if cache_dir else None
    if path is not None and path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape[0] == len(texts):
            if progress:
                progress(len(texts), len(texts))
            return np.ascontiguousarray(vectors, dtype=np.float32), True
    vectors = _embed(embedder, texts, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".embed-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.save(out, vectors, allow_pickle=False)
            Path(temp).replace(path)
        finally:
            Path(temp).unlink(missing_ok=True)
    return vectors, False


def _embed(embedder: Embedder, texts: Sequence[str], progress: ProgressCallback | None) -> Vectors:
    """Batches of length-sorted texts: as fast as one big call, but with progress."""
    if progress:
        progress(0, len(texts))
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = []
    for start in range(0, len(order), BATCH):
        parts.append(embedder.embed_documents([texts[i] for i in order[start:start + BATCH]]))
        if progress:
            progress(min(start + BATCH, len(texts)), len(texts))
    stacked = np.vstack(parts)
    result = np.empty_like(stacked)
    result[np.asarray(order)] = stacked
    return np.ascontiguousarray(result, dtype=np.float32)
