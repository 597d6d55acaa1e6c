"""IR metrics through pytrec_eval (trec_eval's own C code, as BEIR uses), plus latency.

A run is a ranked list of document ids per query. We hand trec_eval strictly decreasing
scores derived from rank, so its tie-breaking (by document id) can never reorder our
ranking. MRR@k is trec_eval's `recip_rank` on the run cut to its first k documents.
Queries with no retrieved document count as zero, not as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evals.beir import Qrels

Run = dict[str, list[str]]
"""query id -> document ids, best first (no duplicates)."""


@dataclass(frozen=True, slots=True)
class Scores:
    ndcg: float
    recall: float
    recall_100: float
    mrr: float
    k: int
    per_query: dict[str, dict[str, float]]
    """query id -> {"ndcg", "recall", "recall_100", "mrr"}."""


def _as_trec(run: Mapping[str, Sequence[str]], depth: int) -> dict[str, dict[str, float]]:
    trec: dict[str, dict[str, float]] = {}
    for query, docs in run.items():
        ranked = list(dict.fromkeys(docs))[:depth]
        trec[query] = {doc: float(len(ranked) - rank) for rank, doc in enumerate(ranked)}
    return trec


def evaluate(qrels: Qrels, run: Mapping[str, Sequence[str]], k: int = 10) -> Scores:
    """nDCG@k, recall@k, recall@100 and MRR@k, averaged over every judged query."""
    import pytrec_eval

    judged = {q: docs for q, docs in qrels.items() if any(s > 0 for s in docs.values())}
    full = pytrec_eval.RelevanceEvaluator(
        judged, {f"ndcg_cut.{k}", f"recall.{k}", "recall.100"}).evaluate(
        _as_trec(run, max(k, 100)))
    top = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(_as_trec(run, k))
    per_query: dict[str, dict[str, float]] = {}
    for query in judged:
        row = full.get(query, {})
        per_query[query] = {
            "ndcg": float(row.get(f"ndcg_cut_{k}", 0.0)),
            "recall": float(row.get(f"recall_{k}", 0.0)),
            "recall_100": float(row.get("recall_100", 0.0)),
            "mrr": float(top.get(query, {}).get("recip_rank", 0.0)),
        }

    def mean(name: str) -> float:
        return float(np.mean([v[name] for v in per_query.values()])) if per_query else 0.0

    return Scores(ndcg=mean("ndcg"), recall=mean("recall"), recall_100=mean("recall_100"),
                  mrr=mean("mrr"), k=k, per_query=per_query)


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The q-th percentile of latencies given in seconds, in milliseconds."""
    if not seconds:
        return 0.0
    return float(np.percentile(np.asarray(seconds, dtype=np.float64), q) * 1000.0)
