"""Manifest verification, last-known-good restore and incremental ingest."""

import json
import shutil
from pathlib import Path

import pytest

from agent.testing.embeddings import HashingEmbedder
from knowledge.index import (
    CHUNKS_FILE,
    DENSE_FILE,
    MANIFEST,
    EmbeddingInfo,
    EmbeddingMismatchError,
    IndexCorruptError,
    IndexMissingError,
    last_good_path,
    open_index,
    verify_index,
)
from knowledge.ingest import NoDocumentsError, ingest

TEST_MODEL = EmbeddingInfo(provider="test", model="hashing-test", dimension=64)


def _ingest(docs: Path, index: Path, embedder: HashingEmbedder, **kw: object):
    return ingest(docs, index, embedder, provider="test", chunk_size=200, chunk_overlap=40,
                  **kw)  # type: ignore[arg-type]


def test_manifest_records_model_hashes_and_counts(built_index: Path):
    manifest = json.loads((built_index / MANIFEST).read_text())
    assert manifest["format_version"] == 1
    assert manifest["embedding"] == {"provider": "test", "model": "hashing-test", "dimension": 64}
    assert set(manifest["documents"]) == {"garden.md", "bikes.txt", "kitchen.html"}
    assert DENSE_FILE in manifest["files"] and CHUNKS_FILE in manifest["files"]
    assert any(name.startswith("bm25/") for name in manifest["files"])
    index = open_index(built_index, TEST_MODEL)
    assert manifest["chunk_count"] == len(index.chunks) == index.dense.ntotal


def test_no_pickle_anywhere(built_index: Path):
    for path in built_index.rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"


def test_flipped_byte_is_detected(built_index: Path):
    path = built_index / DENSE_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"dense\.faiss.*damaged"):
        verify_index(built_index)


def test_truncated_file_is_detected(built_index: Path):
    path = built_index / CHUNKS_FILE
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(IndexCorruptError, match=r"chunks\.json"):
        open_index(built_index, TEST_MODEL)


def test_missing_file_is_detected(built_index: Path):
    (built_index / DENSE_FILE).unlink()
    with pytest.raises(IndexCorruptError, match=r"dense\.faiss.*missing"):
        open_index(built_index, TEST_MODEL)


def test_missing_or_garbage_manifest(built_index: Path):
    (built_index / MANIFEST).write_text("{not json")
    with pytest.raises(IndexCorruptError, match="manifest"):
        verify_index(built_index)
    (built_index / MANIFEST).unlink()
    with pytest.raises(IndexCorruptError, match="manifest"):
        verify_index(built_index)


def test_manifest_cannot_point_outside_the_index(built_index: Path):
    manifest = json.loads((built_index / MANIFEST).read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (built_index / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="outside"):
        verify_index(built_index)


def test_wrong_model_is_refused_with_a_clear_message(built_index: Path):
    other = EmbeddingInfo(provider="local", model="all-MiniLM-L6-v2", dimension=384)
    with pytest.raises(EmbeddingMismatchError, match=r"hashing-test.*all-MiniLM-L6-v2.*--rebuild"):
        open_index(built_index, other)


def test_missing_index(tmp_path: Path):
    with pytest.raises(IndexMissingError, match="signal-rag ingest"):
        open_index(tmp_path / "nothing", TEST_MODEL)


def test_damaged_index_is_restored_from_last_good(docs_dir: Path, index_dir: Path,
                                                   embedder: HashingEmbedder):
    _ingest(docs_dir, index_dir, embedder)
    (docs_dir / "extra.md").write_text("# Extra\n\nSomething new about kites and wind.")
    _ingest(docs_dir, index_dir, embedder)  # the first build becomes last-good
    assert last_good_path(index_dir).is_dir()
    (index_dir / DENSE_FILE).write_bytes(b"garbage")
    index = open_index(index_dir, TEST_MODEL)
    assert index.restored_from_last_good
    assert "extra.md" not in index.manifest.documents  # the older, verified copy
    verify_index(index_dir)  # the live copy is whole again
    assert list(index_dir.parent.glob("index.damaged-*")), "the damaged copy is kept aside"


def test_no_last_good_means_a_clear_error(built_index: Path):
    shutil.rmtree(last_good_path(built_index), ignore_errors=True)
    (built_index / DENSE_FILE).write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError):
        open_index(built_index, TEST_MODEL)


def test_second_ingest_embeds_nothing(docs_dir: Path, index_dir: Path, embedder: HashingEmbedder):
    first = _ingest(docs_dir, index_dir, embedder)
    assert first.added == 3 and first.chunks_embedded == first.chunks_total > 0
    before = (index_dir / MANIFEST).read_text()
    second = _ingest(docs_dir, index_dir, embedder)
    assert second.chunks_embedded == 0
    assert (second.unchanged, second.added, second.changed, second.removed) == (3, 0, 0, 0)
    assert (index_dir / MANIFEST).read_text() == before, "nothing rewritten"


def test_changed_file_reembeds_only_its_new_chunks(docs_dir: Path, index_dir: Path,
                                                    embedder: HashingEmbedder):
    _ingest(docs_dir, index_dir, embedder)
    (docs_dir / "bikes.txt").write_text("Bicycle maintenance. Replace brake pads when worn.")
    report = _ingest(docs_dir, index_dir, embedder)
    assert report.changed == 1 and report.unchanged == 2
    index = open_index(index_dir, TEST_MODEL)
    bike_chunks = [c for c in index.chunks if c.source == "bikes.txt"]
    assert report.chunks_embedded == len(bike_chunks) == 1
    assert "brake pads" in bike_chunks[0].text


def test_deleted_file_leaves_the_index(docs_dir: Path, index_dir: Path, embedder: HashingEmbedder):
    _ingest(docs_dir, index_dir, embedder)
    (docs_dir / "garden.md").unlink()
    report = _ingest(docs_dir, index_dir, embedder)
    assert report.removed == 1 and report.chunks_embedded == 0
    index = open_index(index_dir, TEST_MODEL)
    assert "garden.md" not in index.manifest.documents
    assert all(c.source != "garden.md" for c in index.chunks)
    assert index.dense.ntotal == len(index.chunks)


def test_unreadable_new_version_keeps_the_old_one(docs_dir: Path, index_dir: Path,
                                                   embedder: HashingEmbedder):
    (docs_dir / "manual.pdf").write_bytes(_tiny_pdf())
    _ingest(docs_dir, index_dir, embedder)
    (docs_dir / "manual.pdf").write_bytes(b"%PDF-1.4 broken")
    report = _ingest(docs_dir, index_dir, embedder)
    assert report.errors and "manual.pdf" in report.errors[0]
    assert report.removed == 0
    assert "manual.pdf" in open_index(index_dir, TEST_MODEL).manifest.documents


def test_rebuild_reembeds_everything(built_index: Path, docs_dir: Path, embedder: HashingEmbedder):
    report = _ingest(docs_dir, built_index, embedder, rebuild=True)
    assert report.chunks_embedded == report.chunks_total


def test_ingest_with_another_model_needs_rebuild(built_index: Path, docs_dir: Path):
    with pytest.raises(EmbeddingMismatchError):
        ingest(docs_dir, built_index, HashingEmbedder(model_name="other"), provider="test")


def test_empty_folder_is_an_error(tmp_path: Path, index_dir: Path, embedder: HashingEmbedder):
    with pytest.raises(NoDocumentsError):
        _ingest(tmp_path, index_dir, embedder)


def test_progress_reports_every_chunk(docs_dir: Path, index_dir: Path, embedder: HashingEmbedder):
    seen: list[tuple[int, int]] = []
    report = _ingest(docs_dir, index_dir, embedder, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, report.chunks_embedded)
    assert seen[-1] == (report.chunks_embedded, report.chunks_embedded)


def _tiny_pdf() -> bytes:
    from io import BytesIO

    from reportlab.pdfgen import canvas

    buffer = BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    pdf.drawString(72, 720, "The manual explains how to calibrate the sensor.")
    pdf.save()
    return buffer.getvalue()
