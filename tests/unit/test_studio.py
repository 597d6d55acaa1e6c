"""The offline parts behind langgraph.json (agent/studio.py), without loading the model."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent import studio
from agent.settings import load_settings
from knowledge.index import KnowledgeIndexError
from tests.fakes.embeddings import HashingEmbedder


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_offline_settings_drop_the_model_server_and_remote_embeddings(
        env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_LLM__MODEL", "chat")
    monkeypatch.setenv("SIGNAL_RAG_LLM__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__PROVIDER", "openai")
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__MODEL", "embed")
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__BASE_URL", "http://127.0.0.1:9/v1")
    settings = studio.offline_settings(load_settings(env / "no-secrets"))
    assert settings.llm.model is None
    assert settings.embeddings.provider == "local"
    assert settings.data_dir == env / "data"


def test_no_index_and_no_sample_documents_is_a_clear_error(
        env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(studio, "EXAMPLES", env / "missing")
    settings = studio.offline_settings(load_settings(env / "no-secrets"))
    assistant = SimpleNamespace(embedder=HashingEmbedder())
    with pytest.raises(KnowledgeIndexError, match="signal-rag ingest PATH"):
        studio._index(settings, assistant)  # type: ignore[arg-type]
    assert not (env / "data" / studio.SAMPLE_INDEX).exists()


def test_the_context_schema_fills_every_part_from_the_offline_context(
        monkeypatch: pytest.MonkeyPatch):
    """What the LangGraph API does with a run's JSON context: OfflineContext(**context)."""
    parts = SimpleNamespace(knowledge="kb", audit="sink", passage_checks=None,
                            query_vector=None, canary="canary-1")
    monkeypatch.setattr(studio, "offline_context", lambda: parts)
    context = studio.OfflineContext(**{"top_k": 7})
    assert (context.knowledge, context.audit, context.canary, context.top_k) == \
        ("kb", "sink", "canary-1", 7)
    assert context.chat_model is None and context.model_name == "extractive"
