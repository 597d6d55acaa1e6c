"""Incremental ingest: only new or changed documents are embedded; removed ones leave."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.chunking import Chunk, chunk_pages, make_splitter
from knowledge.documents import DocumentError, discover, file_sha256, load
from knowledge.embeddings import Embedder, Vectors
from knowledge.index import (
    DocumentRecord,
    EmbeddingInfo,
    EmbeddingMismatchError,
    KnowledgeIndex,
    KnowledgeIndexError,
    Manifest,
    check_embedding,
    dense_index_is_current,
    open_index,
    write_index,
)
from knowledge.lexical import bm25_tokenize

ProgressCallback = Callable[[int, int], None]
"""Called as (chunks embedded so far, chunks to embed)."""

EMBED_BATCH = 64
EMBED_TITLE = True
"""Embed a chunk's title with its text: +0.007 nDCG@10 on SciFact (docs/evals.md)."""


class NoDocumentsError(ValueError):
    """The ingest path holds no supported document."""


@dataclass(slots=True)
class IngestReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    rebuilt_reason: str | None = None

    def summary(self) -> str:
        text = (f"{self.added} added, {self.changed} changed, {self.removed} removed, "
                f"{self.unchanged} unchanged documents; embedded {self.chunks_embedded} of "
                f"{self.chunks_total} chunks in {self.seconds:.1f} s")
        if self.errors:
            text += f"; {len(self.errors)} document(s) could not be read"
        return text


def embedding_text(chunk: Chunk, *, title: bool | None = None) -> str:
    """The text the embedding model sees for a chunk; the evals measure the same choice.

    `title=None` means the product default, `EMBED_TITLE`.
    """
    with_title = EMBED_TITLE if title is None else title
    return f"{chunk.title} {chunk.text}".strip() if with_title else chunk.text


def _text_key(chunk: Chunk) -> str:
    return hashlib.sha256(embedding_text(chunk).encode()).hexdigest()


@dataclass(slots=True)
class _Plan:
    """What one ingest keeps from the previous index and what it must (re)chunk."""

    kept_chunks: list[Chunk] = field(default_factory=list)
    kept_rows: list[int] = field(default_factory=list)
    new_chunks: list[Chunk] = field(default_factory=list)
    documents: dict[str, DocumentRecord] = field(default_factory=dict)


def ingest(root: Path, index_dir: Path, embedder: Embedder, *, provider: str,
           chunk_size: int = 1000, chunk_overlap: int = 200, rebuild: bool = False,
           progress: ProgressCallback | None = None) -> IngestReport:
    """Bring the index at `index_dir` in line with the documents under `root`."""
    started = time.perf_counter()
    report = IngestReport()
    if not root.exists():
        raise NoDocumentsError(f"{root} does not exist")
    files = list(discover(root))
    if not files:
        raise NoDocumentsError(f"no Markdown, text, HTML or PDF documents found in {root}")

    expected = EmbeddingInfo(provider=provider, model=embedder.model_name,
                             dimension=embedder.dimension)
    previous = None if rebuild else _previous_index(index_dir, expected, report)
    same_chunking = previous is not None and (
        (previous.manifest.chunk_size, previous.manifest.chunk_overlap,
         previous.manifest.embed_title) == (chunk_size, chunk_overlap, EMBED_TITLE))
    plan = _plan(root, files, previous if same_chunking else None,
                 make_splitter(chunk_size, chunk_overlap), report)
    if previous is not None:
        report.removed = len(set(previous.manifest.documents) - set(plan.documents))

    # Vectors are reused only if they embedded the same kind of text as we would now.
    reuse = previous if previous is not None and \
        previous.manifest.embed_title == EMBED_TITLE else None
    old_vectors = reuse.vectors() if reuse is not None else None
    reusable = ({_text_key(c): row for row, c in enumerate(reuse.chunks)}
                if reuse is not None else {})
    vectors = _vectors_for(plan, embedder, old_vectors, reusable, dimension=expected.dimension,
                           progress=progress, report=report)
    all_chunks = plan.kept_chunks + plan.new_chunks
    report.chunks_total = len(all_chunks)
    changed = report.added or report.changed or report.removed or not same_chunking \
        or (previous is not None and not dense_index_is_current(previous.dense))
    if changed:
        manifest = Manifest(embedding=expected, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            chunk_count=len(all_chunks), documents=plan.documents,
                            embed_title=EMBED_TITLE)
        write_index(index_dir, manifest, all_chunks, vectors, bm25_tokenize)
    report.seconds = time.perf_counter() - started
    return report


def _plan(root: Path, files: list[Path], previous: KnowledgeIndex | None,
          splitter: RecursiveCharacterTextSplitter, report: IngestReport) -> _Plan:
    """Keep unchanged documents' chunks; load and chunk new or changed ones."""
    plan = _Plan()
    old_rows: dict[str, list[int]] = {}
    if previous is not None:
        for row, chunk in enumerate(previous.chunks):
            old_rows.setdefault(chunk.source, []).append(row)
    known = previous.manifest.documents if previous is not None else {}
    base = root if root.is_dir() else root.parent
    for path in files:
        source = path.relative_to(base).as_posix()
        digest = file_sha256(path)
        old = known.get(source)
        if previous is not None and old is not None and old.sha256 == digest \
                and source in old_rows:
            report.unchanged += 1
            plan.documents[source] = old
            plan.kept_rows.extend(old_rows[source])
            plan.kept_chunks.extend(previous.chunks[r] for r in old_rows[source])
            continue
        try:
            chunks = chunk_pages(load(path, source), splitter)
        except DocumentError as exc:
            report.errors.append(str(exc))
            if previous is not None and old is not None and source in old_rows:
                # An unreadable new version must not silently delete the old one.
                plan.documents[source] = old
                plan.kept_rows.extend(old_rows[source])
                plan.kept_chunks.extend(previous.chunks[r] for r in old_rows[source])
            continue
        if old is not None:
            report.changed += 1
        else:
            report.added += 1
        plan.documents[source] = DocumentRecord(sha256=digest, chunks=len(chunks))
        plan.new_chunks.extend(chunks)
    return plan


def _vectors_for(plan: _Plan, embedder: Embedder, old_vectors: Vectors | None,
                 reusable: dict[str, int], *, dimension: int,
                 progress: ProgressCallback | None, report: IngestReport) -> Vectors:
    """Vectors in chunk order: reused for known texts, embedded for the rest."""
    to_embed = [c for c in plan.new_chunks if _text_key(c) not in reusable]
    fresh = _embed(embedder, [embedding_text(c) for c in to_embed], progress)
    fresh_by_key = {_text_key(c): fresh[i] for i, c in enumerate(to_embed)}
    report.chunks_embedded = len(to_embed)
    empty = np.zeros((0, dimension), dtype=np.float32)
    rows = []
    for chunk in plan.new_chunks:
        key = _text_key(chunk)
        if key in fresh_by_key:
            rows.append(fresh_by_key[key])
        else:
            assert old_vectors is not None  # reusable is empty without a previous index
            rows.append(old_vectors[reusable[key]])
    kept = old_vectors[plan.kept_rows] if old_vectors is not None and plan.kept_rows else empty
    added = np.vstack(rows) if rows else empty
    return np.ascontiguousarray(np.vstack([kept, added]), dtype=np.float32)


def _previous_index(index_dir: Path, expected: EmbeddingInfo,
                    report: IngestReport) -> KnowledgeIndex | None:
    try:
        previous = open_index(index_dir)
    except EmbeddingMismatchError:
        raise
    except KnowledgeIndexError as exc:
        if index_dir.exists():
            report.rebuilt_reason = str(exc)
        return None
    check_embedding(previous.manifest, expected)
    return previous


def _embed(embedder: Embedder, texts: list[str], progress: ProgressCallback | None) -> Vectors:
    """Embed in batches for the progress bar, longest first as the model itself would.

    sentence-transformers sorts one call's inputs by length to limit padding; batching
    length-sorted texts keeps that saving, so ingest runs at the model's own speed.
    """
    if progress:
        progress(0, len(texts))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = []
    for start in range(0, len(order), EMBED_BATCH):
        batch = [texts[i] for i in order[start:start + EMBED_BATCH]]
        parts.append(embedder.embed_documents(batch))
        if progress:
            progress(min(start + EMBED_BATCH, len(texts)), len(texts))
    vectors = np.vstack(parts)
    result = np.empty_like(vectors)
    result[np.asarray(order)] = vectors
    return result
