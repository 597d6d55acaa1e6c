"""`langgraph.json`: the graph loads the way LangGraph's server loads it (a file path and an
attribute, the factory called with the run's config, the context built from the run's JSON)
and answers a question from the sample documents with a citation, offline."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What does exit code 3 mean?"


def graph_spec() -> tuple[str, Path, str]:
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    (name, target), = config["graphs"].items()
    path, _, attribute = (target if isinstance(target, str) else target["path"]).rpartition(":")
    return name, (ROOT / path).resolve(), attribute


def load_factory() -> Any:
    """As langgraph-api's `_graph_from_spec` does: module from the file, then the attribute."""
    _, path, attribute = graph_spec()
    modname = str(path.relative_to(ROOT)).replace("/", "__").replace(".py", "")
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[modname]
    return module.__dict__[attribute]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no .env or secrets of the checkout
    return tmp_path / "data"


def test_langgraph_json_names_a_factory_and_installs_this_project():
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={config['python_version']}"
    name, path, attribute = graph_spec()
    assert name == "signal-rag" and path.is_file() and path.is_relative_to(ROOT)
    factory = load_factory()
    # the server accepts 0, 1 (config or runtime) or 2 parameters
    assert callable(factory) and len(inspect.signature(factory).parameters) <= 2
    assert attribute == factory.__name__


async def test_the_named_graph_answers_with_a_citation_from_the_sample_documents(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No index configured: the bundled sample documents are ingested into the data dir; a
    configured model server is not used (its port is closed): the graph stays offline."""
    monkeypatch.setenv("SIGNAL_RAG_LLM__MODEL", "never-called")
    monkeypatch.setenv("SIGNAL_RAG_LLM__BASE_URL", "http://127.0.0.1:9/v1")
    graph = await load_factory()({"configurable": {}})
    run = uuid.uuid4()
    result = await graph.ainvoke({"question": QUESTION, "user": "studio"}, {"run_id": run},
                                 context={})  # what the API passes when a run sends none
    assert result["fallback_reason"] is None, result
    assert result["citations"] and "[1]" in result["reply"]
    assert (clean_env / "sample-index" / "manifest.json").is_file()
    # a run's JSON context may set the plain fields
    short = await graph.ainvoke({"question": "x" * 50, "user": "studio"},
                                context={"max_input_chars": 10})
    assert short["fallback_reason"] == "too_long"
    from agent.audit import flush_audit_files

    assert flush_audit_files(timeout=30) == 0  # the writer thread appends a moment later
    events = [json.loads(line) for line in (clean_env / "audit.jsonl").read_text().splitlines()]
    assert events[0]["run_id"] == run.hex and events[0]["model"] == "extractive"
    assert events[1]["route"] == "fallback:too_long"
