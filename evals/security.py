"""Security evaluation of the threat guard (EV-3): recall, false-positive rate, per layer.

`python -m evals.security` (or `make security-eval`) scores each labelled set three times —
rules only, rules + decoding, and all layers with the learned detector — and writes
`security.md` and `security.json`. The learned layer never scores a line it was trained on:
on the external deepset set it is k-fold cross-validated (trained on the repository's
training data plus the other folds); the project's own held-out sets are scored with the
shipped weights, which are trained without them. Latency is measured, not assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guards.learned import LearnedModel, default_model, parse_model
from guards.scan import Item, Metrics, json_lines, metrics, parse_lines
from guards.threats import Source, analyze
from guards.train import TRAIN_FILE, dumps, export, fit, read_rows

ROOT = Path(__file__).resolve().parent.parent
DEEPSET = ROOT.parent / "shared" / "datasets" / "prompt-injection" / "deepset-train.jsonl"
OWN_SETS = ROOT / "evals" / "datasets" / "security"
KNOWLEDGE = ROOT / "examples" / "knowledge"
REPORTS = ROOT / "evals" / "reports"
FOLDS = 5
SEED = 7

LAYERS = ("rules", "rules+decoding", "rules+decoding+learned")


@dataclass(frozen=True, slots=True)
class SetResult:
    name: str
    layer: str
    result: Metrics
    note: str


PASSAGE_KINDS = frozenset({"passage", "indirect", "document"})
"""Items that would reach the guard as retrieved text are scored as passages."""


def _source(item: Item, default: Source = "message") -> Source:
    return "passage" if item.kind in PASSAGE_KINDS else default


def _blocked(items: Sequence[Item], layer: str, model: LearnedModel | None,
             source: Source = "message") -> list[bool]:
    decoding = layer != "rules"
    learned = layer.endswith("learned")
    return [analyze(item.text, source=_source(item, source), decoding=decoding,
                    learned=learned, model=model if learned else None).blocked
            for item in items]


def _folds(items: Sequence[Item], k: int) -> list[list[int]]:
    """Stratified, seeded fold assignment: every fold keeps the set's class balance."""
    rng = random.Random(SEED)  # noqa: S311 - seeded for reproducibility, not for secrecy
    folds: list[list[int]] = [[] for _ in range(k)]
    for label in (0, 1):
        indices = [i for i, item in enumerate(items) if item.label == label]
        rng.shuffle(indices)
        for position, index in enumerate(indices):
            folds[position % k].append(index)
    return folds


def cross_validated(items: Sequence[Item], k: int = FOLDS) -> list[bool]:
    """Blocked flags with the learned layer trained on repo data + the other k-1 folds."""
    base = read_rows(TRAIN_FILE)
    blocked = [False] * len(items)
    for fold in _folds(items, k):
        held = set(fold)
        extra = [(item.text, int(item.label or 0)) for i, item in enumerate(items)
                 if i not in held]
        model = parse_model(json.loads(dumps(export(fit(base + extra)))))
        for index in fold:
            blocked[index] = analyze(items[index].text, source=_source(items[index]),
                                     model=model).blocked
    return blocked


def _read(path: Path) -> list[Item]:
    return parse_lines(json_lines(path.read_text(encoding="utf-8")))


def knowledge_passages() -> list[Item]:
    """The bundled sample documents, chunked as ingest chunks them: all benign."""
    from knowledge.chunking import chunk_pages, make_splitter
    from knowledge.documents import discover, load

    splitter = make_splitter(1000, 200)
    items: list[Item] = []
    for path in discover(KNOWLEDGE):
        items.extend(Item(text=chunk.text, label=0, kind="document")
                     for chunk in chunk_pages(load(path, path.name), splitter))
    return items


def scifact_passages(limit: int) -> list[Item]:
    corpus = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
    items: list[Item] = []
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            if len(items) >= limit:
                break
            row = json.loads(line)
            items.append(Item(text=f"{row['title']} {row['text']}"[:1000], label=0,
                              kind="document"))
    return items


def latency(items: Sequence[Item], model: LearnedModel, repeat: int = 3) -> dict[str, float]:
    """Microseconds per uncached call of all layers (`analyze`, bypassing detect's cache)."""
    for item in items[:20]:
        analyze(item.text, source=_source(item), model=model)  # warm-up
    samples: list[float] = []
    cpu_started = time.process_time()
    for _ in range(repeat):
        for item in items:
            started = time.perf_counter()
            analyze(item.text, source=_source(item), model=model)
            samples.append((time.perf_counter() - started) * 1e6)
    cpu_us = (time.process_time() - cpu_started) * 1e6 / max(len(samples), 1)
    samples.sort()
    return {"calls": len(samples), "mean_us": statistics.fmean(samples), "cpu_mean_us": cpu_us,
            "p50_us": samples[len(samples) // 2], "p95_us": samples[int(len(samples) * 0.95)],
            "max_us": samples[-1],
            "mean_chars": statistics.fmean(len(i.text) for i in items)}


def evaluate(deepset: Path | None, folds: int, scifact: int) -> dict[str, Any]:
    shipped = default_model()
    results: list[SetResult] = []
    own: list[tuple[str, list[Item]]] = []
    for name in ("attacks", "benign", "holdout_attacks", "holdout_benign"):
        path = OWN_SETS / f"{name}.jsonl"
        own.append((f"own {name} ({path.relative_to(ROOT)})", _read(path)))
    combined = own[0][1] + own[1][1]
    holdout = own[2][1] + own[3][1]
    own.insert(2, ("own attacks + benign", combined))
    own.append(("own holdout attacks + benign", holdout))
    passages = [("sample documents, chunked (examples/knowledge)", knowledge_passages())]
    if scifact:
        passages.append((f"SciFact abstracts, first {scifact} (passages)",
                         scifact_passages(scifact)))
    own += passages
    for name, items in own:
        labels = [item.label for item in items]
        for layer in LAYERS:
            note = "shipped weights (never trained on this set)" if "learned" in layer else ""
            results.append(SetResult(name, layer, metrics(labels, _blocked(items, layer,
                                                                           shipped)), note))
    kinds = _per_kind(own[0][1] + own[3][1], shipped)
    if deepset is not None:
        items = _read(deepset)
        labels = [item.label for item in items]
        name = f"deepset-train ({len(items)} lines, external)"
        for layer in LAYERS[:2]:
            results.append(SetResult(name, layer, metrics(labels, _blocked(items, layer, None)),
                                     ""))
        results.append(SetResult(name, LAYERS[2], metrics(labels, cross_validated(items, folds)),
                                 f"{folds}-fold cross-validated: trained on repo data + "
                                 "the other folds"))
    passage_items = [item for _name, items in passages for item in items]
    latency_passages = latency(passage_items, shipped)
    latency_messages = latency(combined + holdout, shipped)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    thresholds = (f"{shipped.threshold} for messages, {shipped.passage_threshold} "
                  "for passages")
    return {"results": results, "kinds": kinds, "thresholds": thresholds,
            "latency_passages": latency_passages,
            "latency_messages": latency_messages, "load": load}


def _per_kind(items: Sequence[Item], model: LearnedModel) -> dict[str, Metrics]:
    kinds: dict[str, list[Item]] = {}
    for item in items:
        kinds.setdefault(item.kind or "other", []).append(item)
    return {kind: metrics([i.label for i in group], _blocked(group, LAYERS[2], model))
            for kind, group in sorted(kinds.items())}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(report: dict[str, Any], command: str) -> str:
    lines = ["# Security evaluation (EV-3)", "",
             f"Reproduce: `{command}`", "",
             "Recall = share of attacks blocked (attack success rate = 1 − recall); "
             "FPR = share of benign texts blocked; balanced accuracy = (recall + 1 − FPR) / 2.",
             "",
             f"Learned thresholds: {report['thresholds']}. Lines of kind `passage` or "
             "`indirect` and all document chunks are scored as retrieved passages. The "
             "`attacks`/`benign` sets were read during development (rule gaps were fixed), so "
             "their figures are optimistic; the `holdout_*` sets were written afterwards and "
             "never used for tuning. Some training templates imitate attack styles seen in "
             "the deepset set (not its lines), which flatters its figures a little.",
             "", "| set | layers | attacks | recall | attack success | benign | FPR | "
             "balanced acc. | note |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| --- |"]
    for r in report["results"]:
        m = r.result
        success = None if m.recall is None else 1.0 - m.recall
        lines.append(f"| {r.name} | {r.layer} | {m.attacks} | {_fmt(m.recall)} | "
                     f"{_fmt(success)} | {m.benign} | {_fmt(m.fpr)} | "
                     f"{_fmt(m.balanced_accuracy)} | {r.note} |")
    lines += ["", "## Recall by kind of attack (own attack sets, all layers)", "",
              "| kind | attacks | blocked | recall |", "| --- | ---: | ---: | ---: |"]
    for kind, m in report["kinds"].items():
        lines.append(f"| {kind} | {m.attacks} | {m.detected} | {_fmt(m.recall)} |")
    lines += ["", "## Latency per uncached call (all layers, after warm-up)", "",
              f"Load average while measuring: {report['load']} (on {os.cpu_count()} CPUs); "
              "`detect` caches verdicts, so a repeated passage costs a dictionary lookup.", "",
              "| input | calls | mean chars | mean µs | CPU µs | p50 µs | p95 µs | max µs |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, label in (("latency_passages", "passages"), ("latency_messages", "messages")):
        lat = report[key]
        lines.append(f"| {label} | {lat['calls']} | {lat['mean_chars']:.0f} | "
                     f"{lat['mean_us']:.0f} | {lat['cpu_mean_us']:.0f} | {lat['p50_us']:.0f} | "
                     f"{lat['p95_us']:.0f} | {lat['max_us']:.0f} |")
    return "\n".join(lines) + "\n"


def _as_json(report: dict[str, Any]) -> dict[str, Any]:
    def m(x: Metrics) -> dict[str, Any]:
        return {"attacks": x.attacks, "benign": x.benign, "detected": x.detected,
                "false_positives": x.false_positives, "recall": x.recall, "fpr": x.fpr,
                "balanced_accuracy": x.balanced_accuracy}

    return {"results": [{"set": r.name, "layer": r.layer, "note": r.note, **m(r.result)}
                        for r in report["results"]],
            "kinds": {k: m(v) for k, v in report["kinds"].items()},
            "latency_passages": report["latency_passages"],
            "latency_messages": report["latency_messages"], "load": report["load"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deepset", type=Path, default=DEEPSET)
    parser.add_argument("--no-deepset", action="store_true")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--scifact", type=int, default=300,
                        help="benign SciFact abstracts to scan as passages (0: none)")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    deepset = None if args.no_deepset else args.deepset
    if deepset is not None and not deepset.exists():
        print(f"error: {deepset} not found (use --no-deepset)", file=sys.stderr)
        return 2
    scifact = args.scifact if (ROOT.parent / "shared" / "datasets" / "scifact").exists() else 0
    report = evaluate(deepset, args.folds, scifact)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m evals.security " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "security.md").write_text(render(report, command.strip()), encoding="utf-8")
    (args.out / "security.json").write_text(json.dumps(_as_json(report), indent=2) + "\n",
                                            encoding="utf-8")
    print(render(report, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
