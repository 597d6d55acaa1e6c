"""Recorded baselines for the bundled set (EV-2): CI fails when a score drops below one.

The file keeps the configuration that produced the figures, so a check against a run made
differently (other chunking, other k) is refused instead of comparing unlike numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.answers import AnswersReport
from evals.runner import RetrievalReport

TOLERANCE = 0.02
"""How far nDCG@k may fall below the recorded figure before the check fails."""
METRICS = ("ndcg", "recall", "recall_100", "mrr")


class BaselineError(ValueError):
    """The baseline file is missing, unreadable or was recorded with another setup."""


def record(report: RetrievalReport, path: Path, *, tolerance: float = TOLERANCE,
           command: str = "") -> dict[str, Any]:
    data = {
        "dataset": report.dataset, "split": report.split, "k": report.k,
        "chunk_size": report.chunk_size, "chunk_overlap": report.chunk_overlap,
        "embedding_model": report.embedding_model, "tolerance": tolerance,
        "command": command,
        "retrievers": {row.retriever: {m: round(float(getattr(row, m)), 4) for m in METRICS}
                       for row in report.results},
    }
    if path.is_file():  # keep the answer-level section recorded by `eval answers`
        previous = load(path)
        if "answers" in previous:
            data["answers"] = previous["answers"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("retrievers"), dict):
        raise BaselineError(f"{path} is not a baseline file")
    return data


def regressions(report: RetrievalReport, baseline: dict[str, Any]) -> list[str]:
    """One line per retriever whose nDCG@k fell more than the tolerance below its baseline."""
    setup = ("k", "chunk_size", "chunk_overlap", "embedding_model")
    differs = [f"{key}={getattr(report, key)!r} (baseline {baseline.get(key)!r})"
               for key in setup if baseline.get(key) != getattr(report, key)]
    if differs:
        raise BaselineError("the run differs from the baseline's setup: " + ", ".join(differs))
    tolerance = float(baseline.get("tolerance", TOLERANCE))
    found = []
    for name, recorded in baseline["retrievers"].items():
        try:
            row = report.result(name)
        except KeyError:
            continue
        floor = float(recorded["ndcg"]) - tolerance
        if row.ndcg < floor:
            found.append(f"{name}: nDCG@{report.k} {row.ndcg:.4f} is below the baseline "
                         f"{float(recorded['ndcg']):.4f} minus {tolerance}")
    return found


ANSWER_TOLERANCE = 0.05
"""Two questions in 38: the extractive answer share moves in steps of about 0.026."""


def record_answers(report: AnswersReport, path: Path) -> None:
    """Add the answer-level figures to an existing baseline file (or start one)."""
    data: dict[str, Any] = load(path) if path.is_file() else {"retrievers": {}}
    data["answers"] = {
        "tolerance": ANSWER_TOLERANCE,
        "answerers": {row.answerer: {"cited_relevant": round(row.cited_relevant, 4),
                                     "first_cited_relevant": round(row.first_cited_relevant, 4),
                                     "answered": round(row.answered, 4)}
                      for row in report.results}}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def answer_regressions(report: AnswersReport, baseline: dict[str, Any]) -> list[str]:
    """Answerers whose share of answers citing a relevant document fell below the baseline."""
    section = baseline.get("answers") or {}
    tolerance = float(section.get("tolerance", ANSWER_TOLERANCE))
    found = []
    for row in report.results:
        recorded = (section.get("answerers") or {}).get(row.answerer)
        if recorded is None:
            continue
        if row.cited_relevant < float(recorded["cited_relevant"]) - tolerance:
            found.append(f"{row.answerer}: {row.cited_relevant:.4f} of answers cite a relevant "
                         f"document, baseline {float(recorded['cited_relevant']):.4f} "
                         f"minus {tolerance}")
    return found
