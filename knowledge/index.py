"""The on-disk index: FAISS vectors, a JSON docstore, a BM25 index, and a verified manifest.

Nothing here unpickles: FAISS has its own format, the docstore is JSON and bm25s stores
NumPy arrays with `allow_pickle=False`. A bit-flip in a FAISS file loads silently, so every
file's sha256 is recorded in `manifest.json` and checked before anything is read. Each
successful save keeps the previous verified copy as `<index>.last-good`, which `open_index`
restores when the live copy is missing or damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.chunking import Chunk
from knowledge.documents import file_sha256
from knowledge.embeddings import Vectors
from knowledge.lexical import import_bm25s

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DENSE_FILE = "dense.faiss"
CHUNKS_FILE = "chunks.json"
BM25_DIR = "bm25"
LAST_GOOD_SUFFIX = ".last-good"
EXACT_SEARCH_LIMIT = 10_000
"""Up to this many chunks the dense index is exact (`IndexFlatIP`, a scan of every vector);
above it, a graph index (`IndexHNSWFlat`). The scan is memory-bound: on 2 cores it takes
about 0.1 ms per 1,000 chunks and, at 14,393 chunks (SciFact[:5000]), 1.5 ms that also
evicts the caches the rest of the search runs from; HNSW takes 0.3 ms there with 99.5% of
the exact top 10 and 98.7% of the exact top 50 (nDCG@10 in docs/evals.md)."""
HNSW_NEIGHBOURS = 32
"""Links per vector (faiss's M); 16 gave the same speed and a slightly lower recall."""
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 128
"""Candidates HNSW keeps while it searches; raised to the depth asked for when that is
deeper (with fewer than asked, the tail of a deep result list is mostly wrong)."""


class KnowledgeIndexError(RuntimeError):
    """Base for index problems; the CLI maps these to exit code 3."""


class IndexMissingError(KnowledgeIndexError):
    """No index has been built at this location yet."""


class IndexCorruptError(KnowledgeIndexError):
    """A file of the index is missing, damaged or inconsistent."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"index file {file!r} {reason}")
        self.file = file
        self.reason = reason


class EmbeddingMismatchError(KnowledgeIndexError):
    """The index was built with a different embedding model than the one configured."""


@dataclass(frozen=True, slots=True)
class EmbeddingInfo:
    provider: str
    model: str
    dimension: int


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    sha256: str
    chunks: int


@dataclass(slots=True)
class Manifest:
    embedding: EmbeddingInfo
    chunk_size: int
    chunk_overlap: int
    chunk_count: int
    documents: dict[str, DocumentRecord]
    files: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_at: float = 0.0
    embed_title: bool = False
    """Whether chunk vectors embed the title with the text (indexes written before this
    field existed did not); ingest re-embeds everything when this differs from its own."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {version!r} (expected {FORMAT_VERSION})")
        return cls(
            embedding=EmbeddingInfo(**data["embedding"]),
            chunk_size=int(data["chunk_size"]),
            chunk_overlap=int(data["chunk_overlap"]),
            chunk_count=int(data["chunk_count"]),
            documents={k: DocumentRecord(**v) for k, v in data["documents"].items()},
            files={str(k): str(v) for k, v in data["files"].items()},
            format_version=int(version),
            created_at=float(data.get("created_at", 0.0)),
            embed_title=bool(data.get("embed_title", False)),
        )


@dataclass(slots=True)
class KnowledgeIndex:
    """A loaded, verified index ready for retrieval."""

    manifest: Manifest
    chunks: list[Chunk]
    dense: Any
    """faiss.IndexFlatIP (or IndexHNSWFlat above EXACT_SEARCH_LIMIT chunks) over normalised
    vectors, row i = chunks[i]; search it through `nearest`."""
    sparse: Any
    """bm25s.BM25 over the same chunks, or None for an empty index."""
    path: Path
    restored_from_last_good: bool = False

    def vectors(self) -> Vectors:
        """All stored vectors, in chunk order (used to reuse embeddings on re-ingest)."""
        if self.dense.ntotal == 0:
            return np.zeros((0, self.manifest.embedding.dimension), dtype=np.float32)
        return np.asarray(self.dense.reconstruct_n(0, self.dense.ntotal), dtype=np.float32)


def last_good_path(index_dir: Path) -> Path:
    return index_dir.with_name(index_dir.name + LAST_GOOD_SUFFIX)


def _iter_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            yield path


def write_index(index_dir: Path, manifest: Manifest, chunks: Sequence[Chunk],
                vectors: Vectors, bm25_tokenize: Any) -> None:
    """Write a complete index next to `index_dir`, verify it, then swap it in atomically.

    `bm25_tokenize` turns texts into bm25s tokens (injected so retrieval and ingest share
    one tokenizer). The previous live copy, if it verifies, becomes the last-known-good one.
    """
    import faiss

    bm25s = import_bm25s()
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.staging-", dir=index_dir.parent))
    try:
        dense = _dense_index(manifest.embedding.dimension, len(chunks))
        if len(chunks):
            dense.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(dense, str(staging / DENSE_FILE))
        (staging / CHUNKS_FILE).write_text(
            json.dumps([asdict(chunk) for chunk in chunks], ensure_ascii=False), encoding="utf-8")
        if chunks:
            sparse = bm25s.BM25(csc_backend="numpy")  # the same with or without scipy
            sparse.index(bm25_tokenize([_bm25_text(c) for c in chunks]), show_progress=False)
            sparse.save(str(staging / BM25_DIR))
        manifest.chunk_count = len(chunks)
        manifest.created_at = time.time()
        manifest.files = {str(p.relative_to(staging)): file_sha256(p) for p in _iter_files(staging)}
        (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(staging)
        verify_index(staging)  # never swap in something we cannot read back

        previous = last_good_path(index_dir)
        if index_dir.exists():
            try:
                verify_index(index_dir)
                live_is_good = True
            except KnowledgeIndexError:
                live_is_good = False
            if live_is_good:
                if previous.exists():
                    shutil.rmtree(previous)
                index_dir.rename(previous)
            else:
                shutil.rmtree(index_dir)
        staging.rename(index_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _dense_index(dimension: int, rows: int) -> Any:
    """Exact for a small collection, HNSW for a large one (EXACT_SEARCH_LIMIT). faiss builds
    the same HNSW graph from the same vectors on any thread count (checked on 1 and 2), so
    an unchanged corpus still writes a byte-identical index."""
    import faiss

    if rows <= EXACT_SEARCH_LIMIT:
        return faiss.IndexFlatIP(dimension)
    dense = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    dense.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    dense.hnsw.efSearch = HNSW_EF_SEARCH
    return dense


def dense_index_is_current(dense: Any) -> bool:
    """Whether `dense` is the kind `write_index` writes now for its size: an index written
    before the HNSW switch, or one that grew past the limit, is rewritten by the next
    ingest from its stored vectors (nothing is embedded again)."""
    return type(dense) is type(_dense_index(int(dense.d), int(dense.ntotal)))


def nearest(dense: Any, vector: Vectors, limit: int) -> list[int]:
    """Rows of the `limit` stored vectors with the highest inner product with `vector` (one
    row of float32), best first; approximate on an HNSW index."""
    import faiss

    limit = min(limit, dense.ntotal)
    if limit <= 0:
        return []
    params = None
    if isinstance(dense, faiss.IndexHNSWFlat):
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in the stubs
        params.efSearch = max(HNSW_EF_SEARCH, limit)
    _, ids = dense.search(vector, limit, params=params)
    return [int(i) for i in ids[0] if i >= 0]


def _bm25_text(chunk: Chunk) -> str:
    return f"{chunk.title}\n{chunk.text}"


def _fsync_tree(root: Path) -> None:
    for path in _iter_files(root):
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    with (root / MANIFEST).open("rb") as handle:
        os.fsync(handle.fileno())


def read_manifest(index_dir: Path) -> Manifest:
    manifest_path = index_dir / MANIFEST
    if not index_dir.exists():
        raise IndexMissingError(f"no index at {index_dir}: run `signal-rag ingest PATH` first")
    if not manifest_path.is_file():
        raise IndexCorruptError(MANIFEST, f"is missing in {index_dir}")
    try:
        return Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(MANIFEST, f"is not a valid manifest ({exc})") from exc


def verify_index(index_dir: Path) -> Manifest:
    """Check the manifest and the sha256 of every file it lists; return the manifest."""
    manifest = read_manifest(index_dir)
    for name, expected in manifest.files.items():
        path = index_dir / name
        if not path.resolve().is_relative_to(index_dir.resolve()):
            raise IndexCorruptError(name, "points outside the index directory")
        if not path.is_file():
            raise IndexCorruptError(name, "is missing")
        if file_sha256(path) != expected:
            raise IndexCorruptError(name, "is damaged (sha256 does not match the manifest)")
    for required in (DENSE_FILE, CHUNKS_FILE):
        if required not in manifest.files:
            raise IndexCorruptError(required, "is not listed in the manifest")
    return manifest


def check_embedding(manifest: Manifest, expected: EmbeddingInfo) -> None:
    found = manifest.embedding
    if (found.provider, found.model, found.dimension) != (
            expected.provider, expected.model, expected.dimension):
        raise EmbeddingMismatchError(
            f"index was built with {found.provider} embeddings {found.model!r} "
            f"(dimension {found.dimension}) but {expected.provider} {expected.model!r} "
            f"(dimension {expected.dimension}) is configured; "
            "run `signal-rag ingest PATH --rebuild` or configure the original model"
        )


def _load_verified(index_dir: Path, expected: EmbeddingInfo | None) -> KnowledgeIndex:
    import faiss

    bm25s = import_bm25s()

    manifest = verify_index(index_dir)
    if expected is not None:
        check_embedding(manifest, expected)
    try:
        dense = faiss.read_index(str(index_dir / DENSE_FILE))
    except RuntimeError as exc:
        raise IndexCorruptError(DENSE_FILE, f"cannot be read by FAISS ({exc})") from exc
    if not isinstance(dense, faiss.IndexFlatIP | faiss.IndexHNSWFlat) or \
            dense.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexCorruptError(DENSE_FILE, (
            f"is a {type(dense).__name__}, not an inner-product flat or HNSW index"))
    try:
        raw = json.loads((index_dir / CHUNKS_FILE).read_text(encoding="utf-8"))
        chunks = [Chunk(**row) for row in raw]
    except (ValueError, TypeError) as exc:
        raise IndexCorruptError(CHUNKS_FILE, f"is not a valid docstore ({exc})") from exc
    if dense.ntotal != manifest.chunk_count or len(chunks) != manifest.chunk_count:
        raise IndexCorruptError(DENSE_FILE, (
            f"holds {dense.ntotal} vectors and the docstore {len(chunks)} chunks, "
            f"but the manifest says {manifest.chunk_count}"))
    if dense.d != manifest.embedding.dimension:
        raise IndexCorruptError(DENSE_FILE, (
            f"has dimension {dense.d}, manifest says {manifest.embedding.dimension}"))
    sparse = None
    if chunks:
        try:
            sparse = bm25s.BM25.load(str(index_dir / BM25_DIR), allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorruptError(BM25_DIR, f"cannot be read ({exc})") from exc
    return KnowledgeIndex(manifest=manifest, chunks=chunks, dense=dense, sparse=sparse,
                          path=index_dir)


def open_index(index_dir: Path, expected: EmbeddingInfo | None = None) -> KnowledgeIndex:
    """Load and verify the index; restore the last-known-good copy if the live one is bad.

    A model mismatch is never "repaired" by a restore: it is a configuration problem.
    """
    try:
        return _load_verified(index_dir, expected)
    except EmbeddingMismatchError:
        raise
    except KnowledgeIndexError as live_error:
        backup = last_good_path(index_dir)
        if not backup.exists():
            raise
        try:
            _load_verified(backup, expected)
        except KnowledgeIndexError:
            raise live_error from None
        restore_last_good(index_dir)
        loaded = _load_verified(index_dir, expected)
        loaded.restored_from_last_good = True
        return loaded


def restore_last_good(index_dir: Path) -> None:
    """Replace the live index with the last-known-good copy, keeping the bad one aside."""
    backup = last_good_path(index_dir)
    if index_dir.exists():
        quarantine = index_dir.with_name(f"{index_dir.name}.damaged-{int(time.time())}")
        index_dir.rename(quarantine)
    staging = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.restore-", dir=index_dir.parent))
    shutil.rmtree(staging)
    shutil.copytree(backup, staging)
    staging.rename(index_dir)
