"""The ONNX Runtime embedder against sentence-transformers, on real text and real indexes.

- Its vectors equal sentence-transformers' on the sample documents' chunks (cosine
  >= 0.99999), so indexes built with either are interchangeable, which is then shown on a
  real index built with the torch path.
- `ingest`, `ask` and `serve` run as real processes with torch, transformers and
  sentence-transformers made unimportable (importing one kills the process), so none of
  them needs the `export` extra.
- `signal-rag model export` is reproducible: it writes the same bytes as the export
  `make install` made into the default model directory (the fused graph with float16
  weights, whose vectors are the ones compared above).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from agent.testing.ports import free_port
from agent.testing.signal_daemon import BOT_NUMBER, BOT_UUID, FakeSignalDaemon, direct_message
from knowledge.chunking import chunk_pages, make_splitter
from knowledge.documents import discover, load
from knowledge.embeddings import (
    MODEL_MANIFEST,
    LocalEmbedder,
    SentenceTransformerEmbedder,
    default_model_dir,
)
from knowledge.index import EmbeddingInfo, open_index
from knowledge.ingest import embedding_text, ingest
from knowledge.retrieval import KnowledgeBase
from tests.integration.conftest import EXAMPLES
from tests.integration.test_serve_process import wait_until

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "agent.cli"]
QUESTIONS = ["How long am I locked out after wrong passphrase attempts?",
             "What does exit code 3 mean?", "Where are documents stored?",
             "   leading and trailing whitespace   ", "", "x" * 5000]
FORBIDDEN = ("torch", "transformers", "sentence_transformers")


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def sample_chunk_texts() -> list[str]:
    """What ingest embeds for the bundled documents (title + chunk text)."""
    splitter = make_splitter()
    return [embedding_text(chunk) for path in discover(EXAMPLES)
            for chunk in chunk_pages(load(path, path.relative_to(EXAMPLES).as_posix()),
                                     splitter)]


def test_vectors_equal_sentence_transformers_on_the_sample_chunks(
        local_embedder: LocalEmbedder, torch_embedder: SentenceTransformerEmbedder) -> None:
    texts = sample_chunk_texts() + QUESTIONS
    assert len(texts) > 25
    ours = local_embedder.embed_documents(texts)
    theirs = torch_embedder.embed_documents(texts)
    cosine = np.sum(ours * theirs, axis=1)
    assert cosine.min() >= 0.99999, cosine.min()
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    for question in QUESTIONS:  # one at a time, as the bot embeds a query
        single = local_embedder.embed_query(question)[0]
        assert float(single @ torch_embedder.embed_query(question)[0]) >= 0.99999


def test_an_index_built_with_sentence_transformers_is_used_as_is(
        tmp_path: Path, local_embedder: LocalEmbedder,
        torch_embedder: SentenceTransformerEmbedder) -> None:
    index_dir = tmp_path / "index"
    built = ingest(EXAMPLES, index_dir, torch_embedder, provider="local")
    assert built.chunks_embedded > 0 and not built.errors
    manifest_before = (index_dir / "manifest.json").read_text()
    info = EmbeddingInfo("local", local_embedder.model_name, local_embedder.dimension)
    index = open_index(index_dir, info)  # the ONNX path's identity matches the torch one's
    ours = KnowledgeBase(index, local_embedder, min_similarity=-1.0)
    theirs = KnowledgeBase(index, torch_embedder, min_similarity=-1.0)
    for question in QUESTIONS[:3]:
        a = [p.chunk.id for p in ours.search(question, k=4)]
        b = [p.chunk.id for p in theirs.search(question, k=4)]
        assert a == b and a, question
    again = ingest(EXAMPLES, index_dir, local_embedder, provider="local")
    assert again.chunks_embedded == 0 and again.rebuilt_reason is None
    assert json.loads((index_dir / "manifest.json").read_text())["embedding"] == \
        json.loads(manifest_before)["embedding"]


# --- the bot's commands without torch ---------------------------------------------------

@pytest.fixture
def no_torch_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which importing torch, transformers or sentence-transformers
    ends the process with exit 97 (stand-ins first on sys.path), as on a lean install."""
    blockers = tmp_path / "blockers"
    for name in FORBIDDEN:
        (blockers / name).mkdir(parents=True)
        (blockers / name / "__init__.py").write_text(
            f"import os, sys\nsys.stderr.write('forbidden import: {name}\\n')\n"
            "sys.stderr.flush()\nos._exit(97)\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env.update(PYTHONPATH=os.pathsep.join([str(blockers), str(Path.cwd())]),
               SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"), SIGNAL_RAG_SECRETS_DIR=str(secrets),
               SIGNAL_RAG_LOG_LEVEL="WARNING")
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def test_ingest_ask_and_serve_never_import_torch(no_torch_env: dict[str, str], tmp_path: Path,
                                                  sim: FakeSignalDaemon) -> None:
    probe = run(no_torch_env, "model", "export", "--out", str(tmp_path / "m"))
    assert probe.returncode == 97 and "forbidden import: torch" in probe.stderr, \
        "the stand-ins work: the export does import torch"
    ingested = run(no_torch_env, "ingest", str(EXAMPLES))
    assert ingested.returncode == 0, ingested.stderr
    asked = run(no_torch_env, "ask", "What does exit code 3 mean?")
    assert asked.returncode == 0, asked.stderr
    assert "index" in asked.stdout.lower()

    port = free_port()
    env = {**no_torch_env, "SIGNAL_RAG_SIGNAL__URL": sim.http_url,
           "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER, "SIGNAL_RAG_SIGNAL__BOT_UUID": BOT_UUID,
           "SIGNAL_RAG_ACCESS__PASSPHRASE": "let me in please",
           "SIGNAL_RAG_AUDIT__PEPPER": "test-pepper-0123456789abcdef",
           "SIGNAL_RAG_HEALTH__ADDR": f"127.0.0.1:{port}"}
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([*CLI, "serve"], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or ready(port), timeout=120)
        assert process.poll() is None, log.read_text()[-2000:]
        sim.deliver(direct_message("let me in please"))
        wait_until(lambda: sim.count("send") >= 1, timeout=60)
        sim.deliver(direct_message("What does exit code 3 mean?"))
        wait_until(lambda: sim.count("send") >= 2 or process.poll() is not None, timeout=60)
        assert process.poll() is None, log.read_text()[-2000:]
        assert "index" in str(sim.sent("send")[1]["message"]).lower()
    finally:
        process.terminate()
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()[-2000:]
    assert "forbidden import" not in log.read_text()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_serve_with_a_damaged_model_exits_2_in_one_line(no_torch_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    source = default_model_dir()
    model_dir.mkdir()
    for name in ("manifest.json", "tokenizer.json"):
        (model_dir / name).write_bytes((source / name).read_bytes())
    (model_dir / "model.onnx").write_bytes(b"\0" * 1024)  # truncated / overwritten
    env = {**no_torch_env, "SIGNAL_RAG_EMBEDDINGS__MODEL_DIR": str(model_dir),
           "SIGNAL_RAG_SIGNAL__URL": "http://127.0.0.1:9", "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER,
           "SIGNAL_RAG_ACCESS__PASSPHRASE": "let me in please",
           "SIGNAL_RAG_AUDIT__PEPPER": "test-pepper-0123456789abcdef",
           "SIGNAL_RAG_HEALTH__ENABLED": "false"}
    result = run(env, "serve")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "'model.onnx'" in result.stderr and "damaged" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# --- the export -------------------------------------------------------------------------

def test_export_is_reproducible_and_matches_the_installed_model(tmp_path: Path) -> None:
    """The default directory (`make install` exported it) and a fresh export agree byte
    for byte, and the fresh one passed the export's own check against
    sentence-transformers before it was written."""
    out = tmp_path / "exported"
    result = subprocess.run([*CLI, "model", "export", "--out", str(out)], capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    fresh = json.loads((out / MODEL_MANIFEST).read_text())
    installed = json.loads((default_model_dir() / MODEL_MANIFEST).read_text())
    assert fresh["files"] == installed["files"]
    assert fresh["model"] == "all-MiniLM-L6-v2" and fresh["pooling"] == "mean"
    assert fresh["max_seq_length"] == 256 and fresh["normalize"] is True
    # fused by ONNX Runtime's transformer optimizer, weights stored as float16 (fp32 compute)
    assert fresh["graph"] == {"attention": "eager", "fusion": "onnxruntime-transformers bert",
                              "weights": "float16"}
    assert (out / "model.onnx").stat().st_size < 50_000_000
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    verified = subprocess.run([*CLI, "model", "verify", "--dir", str(out)],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0 and "Model OK" in verified.stdout, verified.stderr
