"""EV-2: the bundled labelled set, scored with the real local model against its baseline.

Fails when a retriever's nDCG@10 drops more than the recorded tolerance (0.02) below
evals/datasets/sample/baseline.json, or the share of extractive answers citing a relevant
document drops more than its tolerance. Re-record deliberately (docs/evals.md) when a change
is meant to move the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.testing.openai_server import CHAT_PATH, FakeOpenAIServer, Reply
from evals.answers import AnswerSettings, run_answers
from evals.baseline import answer_regressions, load, regressions
from evals.beir import load_dataset
from evals.retrievers import parse_specs
from evals.runner import run_retrieval
from evals.sample import BASELINE, CHUNK_OVERLAP, CHUNK_SIZE, EXAMPLES, SAMPLE_DIR

pytestmark = pytest.mark.slow


def test_retrieval_on_the_bundled_set_holds_its_baseline(local_embedder):
    baseline = load(BASELINE)
    specs = parse_specs(",".join(baseline["retrievers"]))
    report = run_retrieval(load_dataset(SAMPLE_DIR), specs, embedder=local_embedder,
                           k=baseline["k"], chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    assert report.queries >= 30
    assert regressions(report, baseline) == []
    # The shipped default must stay the best configuration on the set it ships with.
    assert report.result("hybrid").ndcg >= max(r.ndcg for r in report.results) - 1e-9


def test_extractive_answers_cite_relevant_documents(local_embedder):
    report = run_answers(load_dataset(SAMPLE_DIR), EXAMPLES, embedder=local_embedder,
                         settings=AnswerSettings())
    assert answer_regressions(report, load(BASELINE)) == []


def test_answers_command_checks_a_configured_model_too(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    from agent.cli import app

    with FakeOpenAIServer() as server:
        server.default = Reply("See the first source [1].")
        monkeypatch.setenv("SIGNAL_RAG_LLM__MODEL", "fake-model")
        monkeypatch.setenv("SIGNAL_RAG_LLM__BASE_URL", server.base_url)
        monkeypatch.setenv("SIGNAL_RAG_LLM__API_KEY", "sk-test")
        result = CliRunner().invoke(app, ["eval", "answers", "--dataset", str(SAMPLE_DIR),
                                          "--out", str(tmp_path)])
        calls = server.count(CHAT_PATH)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "answers.json").read_text())
    extractive, model = report["results"]
    assert (extractive["answerer"], model["answerer"]) == ("extractive", "fake-model")
    answered = [r for r in model["records"] if r["fallback_reason"] is None]
    assert calls == len(answered) > 0  # one real HTTP call per answered question
    assert all(len(r["cited"]) == 1 for r in answered)  # the model cited [1] only
    assert 0.0 < model["cited_relevant"] <= 1.0
