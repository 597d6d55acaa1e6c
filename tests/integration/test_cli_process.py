"""What `make run` does, as real processes: ingest the samples, then chat over a pipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent.testing.openai_server import EMBEDDINGS_PATH, FakeOpenAIServer
from tests.integration.conftest import EXAMPLES

CLI = [sys.executable, "-m", "agent.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    env.update(SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"), SIGNAL_RAG_LOG_LEVEL="WARNING",
               SIGNAL_RAG_SECRETS_DIR=str(secrets), **extra)
    return env


def test_ingest_then_piped_chat_answers_each_line(tmp_path: Path, sample_data_dir: Path):
    # The model is real; reuse the session's index to keep this test to one model load.
    shutil.copytree(sample_data_dir / "index", tmp_path / "data" / "index")
    env = _env(tmp_path)
    ingest = subprocess.run([*CLI, "ingest", str(EXAMPLES)], env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert ingest.returncode == 0, ingest.stderr
    assert "5 unchanged documents; embedded 0 of" in ingest.stdout

    questions = "What does exit code 3 mean?\nWho won the 1930 football world cup?\n"
    chat = subprocess.run([*CLI, "chat"], input=questions, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert chat.returncode == 0, chat.stderr
    replies = [r for r in chat.stdout.split("\n\n") if r.strip() and not r.startswith("[")]
    assert "missing or damaged" in chat.stdout
    assert "I don't know" in chat.stdout
    assert chat.stdout.count("Sources:") == 1
    assert len([r for r in replies if r.startswith(("•", "I don't know"))]) == 2
    assert "exit code" not in chat.stderr, "no message text in logs"


def test_ask_exits_3_on_a_damaged_index(tmp_path: Path, sample_data_dir: Path):
    shutil.copytree(sample_data_dir / "index", tmp_path / "data" / "index")
    (tmp_path / "data" / "index" / "chunks.json").write_text("[]")
    result = subprocess.run([*CLI, "ask", "anything"], env=_env(tmp_path), capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 3
    assert "chunks.json" in result.stderr and "damaged" in result.stderr


def test_ingest_through_an_openai_compatible_embeddings_endpoint(tmp_path: Path):
    with FakeOpenAIServer(embedding_dim=32) as server:
        env = _env(tmp_path, SIGNAL_RAG_EMBEDDINGS__PROVIDER="openai",
                   SIGNAL_RAG_EMBEDDINGS__MODEL="text-embedding-test",
                   SIGNAL_RAG_EMBEDDINGS__BASE_URL=server.base_url,
                   SIGNAL_RAG_EMBEDDINGS__API_KEY="sk-embed")
        result = subprocess.run([*CLI, "ingest", str(EXAMPLES)], env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        assert server.count(EMBEDDINGS_PATH) >= 1
        verify = subprocess.run([*CLI, "index", "verify"], env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert verify.returncode == 0 and "(32 dimensions)" in verify.stdout
        answer = subprocess.run([*CLI, "ask", "What is the default data directory?"], env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        assert answer.returncode == 0, answer.stderr
