"""The retrieval eval harness, offline: metrics, dataset loading, caching, runs, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.testing.embeddings import HashingEmbedder
from evals.baseline import BaselineError, load, record, regressions
from evals.beir import DatasetError, load_dataset
from evals.cache import cache_path, embed_cached
from evals.metrics import evaluate, percentile_ms
from evals.report import write_report
from evals.retrievers import ConfigError, parse_specs
from evals.runner import run_retrieval
from evals.sample import EXAMPLES, SAMPLE_DIR, corpus_jsonl

CORPUS = {
    "garden": ("Gardening notes", "Tomatoes need full sun and regular watering. Prune the "
               "side shoots of tomato plants every week. Compost improves the soil."),
    "bikes": ("Bicycle maintenance", "Oil the chain every 300 kilometres. Check the tyre "
              "pressure before each ride; road tyres need about 6 bar."),
    "bread": ("Bread baking", "Sourdough needs a mature starter and a long, cool "
              "fermentation. Bake the loaf at 230 degrees for 40 minutes."),
    "tea": ("Tea", "Green tea brews at 80 degrees for two minutes; black tea needs boiling "
            "water and four minutes."),
}
QUERIES = {"q1": "how often to oil the bicycle chain", "q2": "sourdough starter fermentation",
           "q3": "tomato plants sun and compost", "q4": "unjudged question"}
QRELS = [("q1", "bikes", 1), ("q2", "bread", 1), ("q3", "garden", 2)]


def write_dataset(root: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as out:
        for doc_id, (title, text) in corpus.items():
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as out:
        for qid, text in queries.items():
            out.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "toy")


# --- metrics, checked against values computed by hand from the definitions ---------------

def test_metrics_match_hand_computed_values():
    qrels = {"a": {"d1": 1}, "b": {"d4": 1, "d5": 1}, "c": {"d9": 1}, "d": {"d7": 0}}
    run = {"a": ["d2", "d1", "d3"], "b": ["d4", "x1", "x2"], "c": []}
    scores = evaluate(qrels, run, k=10)
    ndcg_a = 1 / math.log2(3)                      # one relevant document at rank 2
    ndcg_b = 1 / (1 + 1 / math.log2(3))            # one of two relevant, at rank 1
    assert scores.per_query["a"]["ndcg"] == pytest.approx(ndcg_a)
    assert scores.per_query["b"]["ndcg"] == pytest.approx(ndcg_b)
    assert scores.per_query["c"] == {"ndcg": 0.0, "recall": 0.0, "recall_100": 0.0, "mrr": 0.0}
    assert "d" not in scores.per_query  # no relevant document: not a judged query
    assert scores.ndcg == pytest.approx((ndcg_a + ndcg_b) / 3)
    assert scores.mrr == pytest.approx((0.5 + 1.0) / 3)
    assert scores.recall == pytest.approx((1.0 + 0.5) / 3)


def test_mrr_and_recall_respect_the_cutoff():
    qrels = {"a": {"d1": 1}}
    run = {"a": ["x1", "x2", "d1"]}
    assert evaluate(qrels, run, k=2).mrr == 0.0
    assert evaluate(qrels, run, k=2).recall == 0.0
    assert evaluate(qrels, run, k=2).recall_100 == 1.0
    assert evaluate(qrels, run, k=3).mrr == pytest.approx(1 / 3)


def test_our_ranking_is_kept_whatever_the_document_ids():
    # trec_eval breaks score ties by document id; rank-derived scores leave no ties.
    qrels = {"a": {"zzz": 1}}
    assert evaluate(qrels, {"a": ["zzz", "aaa"]}, k=10).mrr == 1.0


def test_percentiles_in_milliseconds():
    assert percentile_ms([0.001] * 9 + [0.1], 50) == pytest.approx(1.0)
    assert percentile_ms([], 95) == 0.0


# --- dataset loading ------------------------------------------------------------------------

def test_load_dataset_keeps_only_judged_queries(dataset_dir: Path):
    data = load_dataset(dataset_dir)
    assert list(data.queries) == ["q1", "q2", "q3"]
    assert data.qrels["q3"] == {"garden": 2}
    assert data.corpus["tea"].title == "Tea"


def test_load_dataset_rejects_judgements_of_unknown_documents(tmp_path: Path):
    root = write_dataset(tmp_path / "bad", qrels=[("q1", "nowhere", 1)])
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(root)


def test_load_dataset_names_a_missing_file(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"corpus\.jsonl is missing"):
        load_dataset(tmp_path)


# --- embedding cache ------------------------------------------------------------------------

def test_second_run_reads_embeddings_from_the_cache(tmp_path: Path):
    embedder = HashingEmbedder()
    texts = ["alpha beta", "gamma delta", "epsilon"]
    first, hit = embed_cached(embedder, texts, tmp_path)
    assert not hit and embedder.texts_embedded == 3
    again, hit = embed_cached(embedder, texts, tmp_path)
    assert hit and embedder.texts_embedded == 3
    assert (again == first).all()
    _, hit = embed_cached(embedder, [*texts[:2], "changed"], tmp_path)
    assert not hit and embedder.texts_embedded == 6


def test_cache_key_depends_on_model_and_every_text_boundary(tmp_path: Path):
    base = cache_path(tmp_path, "m", ["ab", "c"])
    assert base != cache_path(tmp_path, "m", ["a", "bc"])
    assert base != cache_path(tmp_path, "other", ["ab", "c"])
    assert base == cache_path(tmp_path, "m", ["ab", "c"])


def test_embeddings_come_back_in_input_order(tmp_path: Path):
    embedder = HashingEmbedder()
    texts = ["short", "a much longer text with many more words", "mid length text"]
    vectors, _ = embed_cached(embedder, texts, None)
    for i, text in enumerate(texts):
        assert (vectors[i] == embedder.embed_query(text)[0]).all()


# --- configurations -------------------------------------------------------------------------

def test_parse_specs():
    specs = parse_specs("bm25, dense,hybrid:fusion=rrf:rrf_k=20")
    assert [s.label for s in specs] == ["bm25", "dense", "hybrid:fusion=rrf:rrf_k=20"]
    assert specs[2].params == {"fusion": "rrf", "rrf_k": "20"}
    assert not specs[0].uses_dense and specs[1].uses_dense
    assert not parse_specs("hybrid:mode=bm25")[0].uses_dense
    for bad in ("nope", "bm25:k1=1", "hybrid:fusion", ""):
        with pytest.raises(ConfigError):
            parse_specs(bad)


# --- a whole run ----------------------------------------------------------------------------

ALL = "bm25,dense,rrf,bm25s:stem=0,hybrid,hybrid:fusion=rrf,product-dense,product-bm25"


def test_run_scores_every_configuration(dataset_dir: Path, tmp_path: Path):
    embedder = HashingEmbedder()
    report = run_retrieval(load_dataset(dataset_dir), parse_specs(ALL), embedder=embedder,
                           k=10, cache_dir=tmp_path / "cache")
    assert [r.retriever for r in report.results] == ALL.split(",")
    for row in report.results:
        assert 0.0 <= row.ndcg <= 1.0 and row.queries == 3
        assert row.latency_p50_ms <= row.latency_p95_ms
        assert set(row.per_query) == {"q1", "q2", "q3"}
    # Lexical evidence is unambiguous here: every configuration using BM25 ranks right.
    assert report.result("bm25").ndcg == 1.0
    assert report.result("hybrid").ndcg == 1.0
    embedded = embedder.texts_embedded
    run_retrieval(load_dataset(dataset_dir), parse_specs(ALL), embedder=embedder, k=10,
                  cache_dir=tmp_path / "cache")
    assert embedder.texts_embedded == embedded, "documents were embedded again"


def test_a_chunk_hit_scores_as_its_document(dataset_dir: Path):
    report = run_retrieval(load_dataset(dataset_dir), parse_specs("hybrid,product-bm25"),
                           embedder=HashingEmbedder(), k=10, chunk_size=60, chunk_overlap=10)
    assert report.chunk_size == 60
    assert report.result("product-bm25").ndcg == 1.0
    assert report.result("hybrid").recall == 1.0


def test_unknown_retriever_parameter_is_a_config_error(dataset_dir: Path):
    with pytest.raises(ConfigError, match="bogus"):
        run_retrieval(load_dataset(dataset_dir), parse_specs("hybrid:bogus=1"),
                      embedder=HashingEmbedder())


def test_report_files(dataset_dir: Path, tmp_path: Path):
    report = run_retrieval(load_dataset(dataset_dir), parse_specs("bm25,hybrid"),
                           embedder=HashingEmbedder())
    json_path, md_path, png_path = write_report(report, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert [r["retriever"] for r in data["results"]] == ["bm25", "hybrid"]
    assert data["results"][0]["per_query"]["q1"]["ndcg"] == 1.0
    table = md_path.read_text()
    assert "| bm25 | 1.000 |" in table and "nDCG@10" in table
    assert png_path.read_bytes().startswith(b"\x89PNG")


def test_baseline_check(dataset_dir: Path, tmp_path: Path):
    report = run_retrieval(load_dataset(dataset_dir), parse_specs("bm25,hybrid"),
                           embedder=HashingEmbedder())
    path = tmp_path / "baseline.json"
    record(report, path)
    assert regressions(report, load(path)) == []
    data = load(path)
    data["retrievers"]["hybrid"]["ndcg"] = report.result("hybrid").ndcg + 0.03
    assert [line.split(":")[0] for line in regressions(report, data)] == ["hybrid"]
    data["retrievers"]["hybrid"]["ndcg"] = report.result("hybrid").ndcg + 0.015
    assert regressions(report, data) == []
    data["k"] = 5
    with pytest.raises(BaselineError, match="k=10"):
        regressions(report, data)


# --- the command line -----------------------------------------------------------------------

def test_cli_writes_the_report_and_checks_a_baseline(dataset_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    import knowledge.embeddings
    from agent.cli import app

    monkeypatch.setattr(knowledge.embeddings, "LocalEmbedder", lambda model: HashingEmbedder())
    out = tmp_path / "out"
    args = ["eval", "retrieval", "--dataset", str(dataset_dir), "--retriever", "bm25,hybrid",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, [*args, "--record-baseline", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert "| hybrid |" in result.output
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.png"}
    assert CliRunner().invoke(app, [*args, "--baseline", str(tmp_path / "b.json")]).exit_code == 0
    baseline = json.loads((tmp_path / "b.json").read_text())
    baseline["retrievers"]["bm25"]["ndcg"] = 1.5
    (tmp_path / "b.json").write_text(json.dumps(baseline))
    failed = CliRunner().invoke(app, [*args, "--baseline", str(tmp_path / "b.json")])
    assert failed.exit_code == 1


def test_cli_rejects_an_unknown_retriever(dataset_dir: Path):
    from agent.cli import app

    result = CliRunner().invoke(app, ["eval", "retrieval", "--dataset", str(dataset_dir),
                                      "--retriever", "magic"])
    assert result.exit_code == 2


# --- the bundled set ------------------------------------------------------------------------

def test_bundled_corpus_matches_the_example_documents():
    assert (SAMPLE_DIR / "corpus.jsonl").read_text(encoding="utf-8") == corpus_jsonl(EXAMPLES), \
        "examples/knowledge changed: run `python -m evals.sample` and re-record the baseline"


def test_bundled_set_is_complete():
    data = load_dataset(SAMPLE_DIR)
    assert len(data.queries) >= 30
    assert {d for judged in data.qrels.values() for d in judged} == set(data.corpus)
    baseline = load(SAMPLE_DIR / "baseline.json")
    assert "hybrid" in baseline["retrievers"] and "extractive" in \
        baseline["answers"]["answerers"]
