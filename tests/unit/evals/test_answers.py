"""The answer-level check: scoring citations, and a real graph run with a fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.testing.embeddings import HashingEmbedder
from evals.answers import AnswersReport, run_answers, score_answers
from evals.baseline import answer_regressions, record_answers
from evals.beir import load_dataset


def _dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = {"garden.md": "Gardening", "bikes.txt": "Bicycle", "kitchen.html": "Bread"}
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": t, "text": t}) + "\n" for d, t in docs.items()))
    queries = {"q1": "How often should I oil the bicycle chain?",
               "q2": "How long is the sourdough fermentation?",
               "q3": "Do tomatoes need full sun?"}
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tbikes.txt\t1\nq2\tkitchen.html\t1\nq3\tgarden.md\t1\n")
    return root


def test_score_answers_counts_relevant_citations(tmp_path: Path):
    data = load_dataset(_dataset(tmp_path / "set"))
    result = score_answers(data, "x", {"q1": (["garden.md", "bikes.txt"], None),
                                       "q2": ([], "no_context")})
    assert result.questions == 3
    assert result.cited_relevant == pytest.approx(1 / 3)
    assert result.first_cited_relevant == 0.0
    assert result.answered == pytest.approx(1 / 3)  # q3 missing counts as not answered


def test_extractive_answers_through_the_graph_cite_the_right_documents(
        tmp_path: Path, docs_dir: Path):
    data = load_dataset(_dataset(tmp_path / "set"))
    report = run_answers(data, docs_dir, embedder=HashingEmbedder())
    [extractive] = report.results
    assert extractive.answerer == "extractive"
    assert extractive.cited_relevant == 1.0, extractive.records
    assert extractive.first_cited_relevant == 1.0


def test_answer_baseline_round_trip(tmp_path: Path):
    data = load_dataset(_dataset(tmp_path / "set"))
    good = AnswersReport("set", [score_answers(data, "extractive", {
        q: (list(rel), None) for q, rel in data.qrels.items()})])
    path = tmp_path / "baseline.json"
    record_answers(good, path)
    assert answer_regressions(good, json.loads(path.read_text())) == []
    worse = AnswersReport("set", [score_answers(data, "extractive", {})])
    assert len(answer_regressions(worse, json.loads(path.read_text()))) == 1
