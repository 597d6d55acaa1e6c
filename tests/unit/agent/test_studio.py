"""The offline parts behind langgraph.json (agent/studio.py), without loading the model."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from agent import studio
from agent.settings import load_settings
from agent.testing.embeddings import HashingEmbedder
from graph.builder import build_graph
from graph.context import GraphContext
from knowledge.index import KnowledgeIndexError
from tests.unit.graph.graph_helpers import context


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


def test_a_run_context_sets_only_the_plain_fields(monkeypatch: pytest.MonkeyPatch):
    """What the LangGraph API does with a run's JSON context: OfflineContext(**context)."""
    parts = context()
    monkeypatch.setattr(studio, "offline_context", lambda: parts)
    run = studio.OfflineContext(**{"top_k": 7})
    assert isinstance(run, GraphContext)
    assert (run.knowledge, run.audit, run.canary, run.top_k) == \
        (parts.knowledge, parts.audit, parts.canary, 7)
    assert run.chat_model is None and run.model_name == "extractive"
    assert studio.OfflineContext().top_k == 4


@pytest.mark.parametrize("hostile", [
    {"knowledge": None}, {"audit": "x"}, {"chat_model": "gpt"}, {"canary": ""},
    {"top_k": "many"}, {"top_k": 0}, {"top_k": 10**9}, {"max_input_chars": -1},
    {"__class__": "x"}, {"spans": {"span": 1}},
])
def test_a_run_context_cannot_swap_the_parts_or_set_bad_values(
        monkeypatch: pytest.MonkeyPatch, hostile: dict[str, Any]):
    monkeypatch.setattr(studio, "offline_context", context)
    with pytest.raises(ValidationError):
        studio.OfflineContext(**hostile)


def test_the_context_json_schema_is_the_run_context():
    schema = build_graph(context_schema=studio.OfflineContext).get_context_jsonschema()
    assert schema is not None
    assert set(schema["properties"]) == {"top_k", "max_input_chars", "max_reply_chars"}
    assert schema["additionalProperties"] is False


def test_the_api_can_build_the_input_and_output_schemas():
    """Studio's input form: pydantic refuses typing.TypedDict on Python 3.11."""
    graph = build_graph(context_schema=studio.OfflineContext)
    assert set(graph.get_input_jsonschema()["properties"]) == {"question", "user", "chat_kind"}
    assert set(graph.get_output_jsonschema()["properties"]) == {"reply", "citations",
                                                                 "fallback_reason", "passages"}
