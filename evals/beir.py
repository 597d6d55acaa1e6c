"""Read a BEIR-format dataset: corpus.jsonl, queries.jsonl and qrels/<split>.tsv.

Why not the `beir` package: it pins old versions of sentence-transformers and pulls in
Elasticsearch and pytrec_eval builds we do not need; the format is three small files.
Only queries that have judgements are evaluated, as BEIR does.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

Qrels = dict[str, dict[str, int]]
"""query id -> {document id: graded relevance}."""


class DatasetError(ValueError):
    """The folder is not a readable BEIR dataset; the message names the file."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    text: str


@dataclass(slots=True)
class Dataset:
    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    """Only the queries that have at least one judgement, in file order."""
    qrels: Qrels
    split: str = "test"
    path: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise DatasetError(f"{path}:{number}: expected an object with an '_id'")
            rows.append(row)
    return rows


def read_qrels(path: Path) -> Qrels:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise DatasetError(f"{path}:{number}: expected query-id, corpus-id, score")
            try:
                score = int(row[2])
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: score {row[2]!r} is not an integer") from exc
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def load_dataset(root: Path, split: str = "test") -> Dataset:
    """Load and cross-check a BEIR dataset folder."""
    corpus = {str(r["_id"]): Document(str(r["_id"]), str(r.get("title") or ""),
                                      str(r.get("text") or ""))
              for r in _read_jsonl(root / "corpus.jsonl")}
    all_queries = {str(r["_id"]): str(r.get("text") or "")
                   for r in _read_jsonl(root / "queries.jsonl")}
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    missing = sorted(q for q in qrels if q not in all_queries)
    if missing:
        raise DatasetError(f"qrels/{split}.tsv judges unknown queries: {missing[:5]}")
    unknown = sorted({d for judged in qrels.values() for d in judged} - set(corpus))
    if unknown:
        raise DatasetError(f"qrels/{split}.tsv judges documents not in the corpus: {unknown[:5]}")
    queries = {q: text for q, text in all_queries.items()
               if any(score > 0 for score in qrels.get(q, {}).values())}
    return Dataset(name=root.resolve().name, corpus=corpus, queries=queries, qrels=qrels,
                   split=split, path=root)
