"""The CLI's commands and exit codes, with the fake embedder in place of the real model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.testing.embeddings import HashingEmbedder
from knowledge.index import DENSE_FILE

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__MODEL", "hashing-test")
    monkeypatch.setenv("SIGNAL_RAG_LOG_LEVEL", "WARNING")
    monkeypatch.setattr("agent.assistant.build_embedder", lambda _s: HashingEmbedder())
    return tmp_path


def test_graph_mermaid_lists_every_node():
    result = runner.invoke(app, ["graph", "--format", "mermaid"])
    assert result.exit_code == 0
    for node in ("sanitize", "threat_check", "retrieve", "generate", "fallback", "audit"):
        assert f"{node}({node})" in result.stdout
    assert "-.->" in result.stdout


def test_graph_ascii_and_png(tmp_path: Path):
    assert "threat_check" in runner.invoke(app, ["graph", "--format", "ascii"]).stdout
    out = tmp_path / "graph.png"
    assert runner.invoke(app, ["graph", "-f", "png", "-o", str(out)]).exit_code == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_unknown_format_is_a_usage_error():
    assert runner.invoke(app, ["graph", "--format", "gif"]).exit_code == 2


def test_config_error_exits_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_LLM__TIMEOUT", "-1")
    result = runner.invoke(app, ["ask", "hello"])
    assert result.exit_code == 2
    assert "SIGNAL_RAG_LLM__TIMEOUT" in result.stderr


def test_ask_without_index_exits_3():
    result = runner.invoke(app, ["ask", "hello"])
    assert result.exit_code == 3
    assert "signal-rag ingest" in result.stderr


def test_ingest_ask_chat_and_verify(docs_dir: Path, env: Path):
    result = runner.invoke(app, ["ingest", str(docs_dir)])
    assert result.exit_code == 0, result.output
    assert "3 added" in result.stdout
    again = runner.invoke(app, ["ingest", str(docs_dir)])
    assert "embedded 0 of" in again.stdout

    answer = runner.invoke(app, ["ask", "How often should I oil the bicycle chain?"])
    assert answer.exit_code == 0
    assert "300 kilometres" in answer.stdout and "bikes.txt" in answer.stdout

    chat = runner.invoke(app, ["chat"], input="tyre pressure for road tyres?\n\n"
                                              "sourdough starter?\n")
    assert chat.exit_code == 0
    assert chat.stdout.count("Sources:") == 2

    verified = runner.invoke(app, ["index", "verify"])
    assert verified.exit_code == 0 and "3 documents" in verified.stdout

    dense = env / "data" / "index" / DENSE_FILE
    data = bytearray(dense.read_bytes())
    data[-1] ^= 0xFF
    dense.write_bytes(bytes(data))
    broken = runner.invoke(app, ["index", "verify"])
    assert broken.exit_code == 3
    assert "dense.faiss" in broken.stderr


def test_ingest_empty_folder_exits_2(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["ingest", str(empty)])
    assert result.exit_code == 2
    assert "no Markdown" in result.stderr


def test_ingest_with_unreadable_document_exits_1(docs_dir: Path):
    (docs_dir / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    result = runner.invoke(app, ["ingest", str(docs_dir)])
    assert result.exit_code == 1
    assert "broken.pdf" in result.stderr
    assert "3 added" in result.stdout


def test_verify_refuses_an_index_of_another_model(docs_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    assert runner.invoke(app, ["ingest", str(docs_dir)]).exit_code == 0
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__MODEL", "all-MiniLM-L6-v2")
    result = runner.invoke(app, ["index", "verify"])
    assert result.exit_code == 3
    assert "hashing-test" in result.stderr


def test_health_reads_only_its_address(monkeypatch: pytest.MonkeyPatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SIGNAL_RAG_HEALTH__ADDR", f"127.0.0.1:{port}")
    monkeypatch.setenv("SIGNAL_RAG_MAX_INPUT_CHARS", "0")  # invalid, and none of its business
    result = runner.invoke(app, ["health", "--timeout", "2"])
    assert result.exit_code == 1, result.output
    assert f"health server at http://127.0.0.1:{port} unreachable" in result.output

    monkeypatch.setenv("SIGNAL_RAG_HEALTH__ADDR", "no-port-here")
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 2
    assert "SIGNAL_RAG_HEALTH__ADDR" in result.output and "host:port" in result.output
