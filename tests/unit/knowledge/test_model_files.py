"""The exported model directory: a missing, incomplete, damaged or tampered model is one
clear error naming the export command, never a download; commands whose optional extra is
missing say which extra to install (exit 2, one line). Real model files are not needed:
the checks run before ONNX Runtime sees a byte."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli import app
from knowledge.embeddings import (
    MODEL_MANIFEST,
    LocalEmbedder,
    ModelFilesError,
    default_model_dir,
    model_slug,
    pool,
    read_model_dir,
)

runner = CliRunner()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model(folder: Path, *, onnx: bytes = b"not really onnx",
                tokenizer: bytes = b"{}", **overrides: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onnx)
    (folder / "tokenizer.json").write_bytes(tokenizer)
    manifest = {"format": 1, "model": "all-MiniLM-L6-v2", "dimension": 384,
                "max_seq_length": 256, "pooling": "mean", "normalize": True,
                "do_lower_case": False, "onnx_file": "model.onnx",
                "tokenizer_file": "tokenizer.json", "quantization": None,
                "files": {"model.onnx": sha(onnx), "tokenizer.json": sha(tokenizer)}}
    manifest.update(overrides)
    (folder / MODEL_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach a hub fails loudly instead of passing silently."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model loader tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_missing_directory_names_the_export_command(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=r"no exported embedding model .*"
                                              r"signal-rag model export --out"):
        LocalEmbedder(model_dir=tmp_path / "nowhere").embed_query("hello")


def test_a_verified_directory_reads_back_every_file(tmp_path: Path) -> None:
    manifest = read_model_dir(write_model(tmp_path / "m"))
    assert manifest.model == "all-MiniLM-L6-v2" and manifest.pooling == "mean"
    assert set(manifest.files) == {"model.onnx", "tokenizer.json"}


def test_a_flipped_byte_is_damage(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[3] ^= 0x01
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFilesError, match=r"'model.onnx' .* is damaged"):
        read_model_dir(folder)


def test_a_manifest_rewritten_for_other_bytes_is_damage(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    manifest["files"]["tokenizer.json"] = sha(b"something else")
    (folder / MODEL_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFilesError, match=r"'tokenizer.json' .* is damaged"):
        read_model_dir(folder)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFilesError, match=r"'tokenizer.json' .* missing"):
        read_model_dir(folder)


@pytest.mark.parametrize(("text", "reason"), [
    ("{not json", "unreadable"),
    ("[]", "invalid"),
    (json.dumps({"format": 99}), "invalid"),
])
def test_an_unreadable_or_foreign_manifest_is_refused(tmp_path: Path, text: str,
                                                      reason: str) -> None:
    folder = write_model(tmp_path / "m")
    (folder / MODEL_MANIFEST).write_text(text)
    with pytest.raises(ModelFilesError, match=reason):
        read_model_dir(folder)


@pytest.mark.parametrize("overrides", [
    {"files": {"../outside": "0" * 64, "model.onnx": "0" * 64, "tokenizer.json": "0" * 64}},
    {"files": {"/etc/passwd": "0" * 64}},
    {"files": {"model.onnx": "not a digest", "tokenizer.json": "0" * 64}},
    {"pooling": "attention"},
    {"dimension": 0},
    {"onnx_file": "elsewhere.onnx"},
    {"max_seq_length": "many"},
])
def test_hostile_manifest_fields_are_refused_before_any_file_is_read(
        tmp_path: Path, overrides: dict[str, Any]) -> None:
    folder = write_model(tmp_path / "m", **overrides)
    with pytest.raises(ModelFilesError, match="invalid"):
        read_model_dir(folder)


def test_verified_bytes_that_are_not_a_model_fail_to_load_clearly(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    with pytest.raises(ModelFilesError, match="cannot load the embedding model"):
        LocalEmbedder(model_dir=folder).embed_query("hello")


def test_another_model_than_the_configured_one_is_refused(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", model="some-other-model")
    embedder = LocalEmbedder("all-MiniLM-L6-v2", model_dir=folder)
    with pytest.raises(ModelFilesError, match=r"is 'some-other-model', but 'all-MiniLM"):
        _ = embedder.dimension


def test_default_model_dir_lives_in_the_python_environment() -> None:
    assert default_model_dir("all-MiniLM-L6-v2") == \
        Path(sys.prefix) / "share" / "signal-rag" / "models" / "all-MiniLM-L6-v2"
    assert model_slug("BAAI/bge-small-en-v1.5") == "BAAI--bge-small-en-v1.5"
    assert model_slug("../../etc") == "etc"


def test_pooling_matches_sentence_transformers_definitions() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)  # the third token is padding
    assert np.allclose(pool(hidden, mask, "mean"), [[2.0, 3.0]])
    assert np.allclose(pool(hidden, mask, "cls"), [[1.0, 2.0]])
    assert np.allclose(pool(hidden, mask, "max"), [[3.0, 4.0]])
    assert np.allclose(pool(hidden, mask, "mean_sqrt_len"), [[4.0 / np.sqrt(2), 6.0 / np.sqrt(2)]])


# --- the CLI -------------------------------------------------------------------------------

@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNAL_RAG_LOG_LEVEL", "WARNING")
    return tmp_path


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_model_verify_reports_a_damaged_directory_with_exit_2(clean_env: Path) -> None:
    folder = write_model(clean_env / "m")
    (folder / "model.onnx").write_bytes(b"tampered")
    result = runner.invoke(app, ["model", "verify", "--dir", str(folder)])
    assert result.exit_code == 2
    assert "damaged" in one_error_line(result.stderr)


def test_ask_with_a_missing_model_exits_2_without_a_download(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__MODEL_DIR", str(clean_env / "no-model"))
    result = runner.invoke(app, ["ask", "hello"])
    assert result.exit_code == 2
    assert "no exported embedding model" in result.stderr


@pytest.mark.parametrize(("argv", "module", "extra"), [
    (["model", "export", "--out", "{tmp}/m"], "torch", "export"),
    (["graph", "--format", "png", "-o", "{tmp}/g.png"], "matplotlib", "draw"),
    (["graph", "--format", "svg", "-o", "{tmp}/g.svg"], "matplotlib", "draw"),
    (["eval", "retrieval", "--dataset", "{tmp}"], "pytrec_eval", "eval"),
])
def test_a_missing_extra_is_named_in_one_line_with_exit_2(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], module: str,
        extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    result = runner.invoke(app, [a.format(tmp=clean_env) for a in argv])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    assert f"'{extra}' extra" in line and f"signal-rag[{extra}]" in line
    assert not (clean_env / "m").exists(), "nothing is written"


def test_parallel_batches_keep_every_vector_in_its_row() -> None:
    """Document batches run side by side give the rows one batch at a time gives."""
    from knowledge.embeddings import default_model_dir

    if not (default_model_dir() / "manifest.json").is_file():
        pytest.skip("no exported model in the default directory")
    texts = [f"document number {i} " * (1 + i % 7) for i in range(40)]
    one = LocalEmbedder(batch_size=4, parallel_batches=1).embed_documents(texts)
    side_by_side = LocalEmbedder(batch_size=4, parallel_batches=3).embed_documents(texts)
    assert np.allclose(one, side_by_side, atol=1e-6)


def test_default_parallel_batches_divide_the_cores_by_the_threads_at_most_two(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from knowledge import embeddings

    monkeypatch.setattr(embeddings.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3},
                        raising=False)
    assert embeddings.default_parallel_batches(1) == 2  # not 4: memory (see there)
    assert embeddings.default_parallel_batches(2) == 2
    assert embeddings.default_parallel_batches(3) == 1
    assert embeddings.default_parallel_batches(8) == 1
    assert embeddings.default_parallel_batches(0) == 1  # each call takes every core
