"""Security evaluation of the threat guard (EV-3): recall, false-positive rate, per layer.

`python -m evals.security` (or `make security-eval`) writes `security.md` and
`security.json`:

- leave-one-source-out (`evals.loso`) over the training corpus and the shared deepset train
  split: each source is scored by models trained and calibrated on the other sources only.
  This is the figure that predicts unseen sets; row-level k-fold is shown beside it;
- the project's own sets, the sample documents and SciFact abstracts (passages) and the
  final untouched set, scored with the shipped weights, which never saw them;
- latency per message check. The learned layers never score a line they were trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.detector.train import TRAIN_FILE, Example, training_examples
from guards.learned import LearnedModel, default_model
from guards.scan import Item, Metrics, json_lines, metrics, parse_lines
from guards.semantic import SemanticHead, default_head
from guards.threats import Source, analyze

ROOT = Path(__file__).resolve().parent.parent
DEEPSET = ROOT.parent / "shared" / "datasets" / "prompt-injection" / "deepset-train.jsonl"
OWN_SETS = ROOT / "evals" / "datasets" / "security"
KNOWLEDGE = ROOT / "examples" / "knowledge"
REPORTS = ROOT / "evals" / "reports"
FOLDS = 5

LAYERS = ("rules", "rules+decoding", "rules+decoding+n-gram", "all layers (+ embedding head)")
ENCODER_LAYER = "all layers + fine-tuned encoder"
"""Scored when the encoder is installed (`make install`; guards/encoder.py)."""


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
             head: SemanticHead | None = None, source: Source = "message") -> list[bool]:
    decoding = layer != "rules"
    learned = layer not in LAYERS[:2]
    flags = [analyze(item.text, source=_source(item, source), decoding=decoding,
                     learned=learned, model=model if learned else None).blocked
             for item in items]
    if layer == LAYERS[3] and head is not None:
        from evals.detector.embedcache import embed

        vectors = embed([item.text for item in items])
        flags = [flag or (_source(item, source) == "message" and head.blocks(vector))
                 for flag, vector, item in zip(flags, vectors, items, strict=True)]
    if layer == ENCODER_LAYER:
        from guards.encoder import default_encoder

        encoder = default_encoder()
        flags = [flag or (_source(item, source) == "message" and encoder.blocks(item.text))
                 for flag, item in zip(_blocked(items, LAYERS[3], model, head, source), items,
                                       strict=True)]
    return flags


def installed_encoder() -> bool:
    from guards.encoder import default_encoder
    from guards.learned import DetectorUnavailableError

    try:
        default_encoder()
    except DetectorUnavailableError as exc:
        print(f"  encoder not scored: {exc}", file=sys.stderr)
        return False
    return True


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


def sample_questions() -> list[Item]:
    """The questions of the bundled retrieval eval (`make eval`): all benign messages."""
    path = ROOT / "evals" / "datasets" / "sample" / "queries.jsonl"
    return [Item(text=json.loads(line)["text"], label=0, kind="question")
            for line in json_lines(path.read_text(encoding="utf-8")) if line.strip()]


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


def shipped_head() -> SemanticHead | None:
    from guards.semantic import DEFAULT_HEAD

    return default_head() if DEFAULT_HEAD.exists() else None


def source_metrics(examples: Sequence[Example], flags: dict[str, dict[str, list[bool]]]
                   ) -> dict[str, dict[str, Metrics]]:
    """Per left-out source and overall (every row scored when its source was left out)."""
    out: dict[str, dict[str, Metrics]] = {}
    overall: dict[str, tuple[list[int], list[bool]]] = {}
    for source, by_config in flags.items():
        labels = [e.label for e in examples if e.source == source]
        out[source] = {}
        for config, blocked in by_config.items():
            out[source][config] = metrics(labels, blocked)
            pooled = overall.setdefault(config, ([], []))
            pooled[0].extend(labels)
            pooled[1].extend(blocked)
    out["overall (pooled)"] = {c: metrics(ls, bs) for c, (ls, bs) in overall.items()}
    return out


LOSO_CACHE = Path.home() / ".cache" / "signal-rag" / "security-eval"
CACHE_KEY_FILES = ("evals/loso.py", "evals/detector/train.py", "guards/threats.py",
                   "guards/learned.py", "guards/semantic.py", "guards/decoders.py",
                   "guards/textnorm.py")


def _loso_cache(examples: Sequence[Example], folds: int) -> Path:
    """Where the leave-one-source-out and k-fold flags of the rules, n-gram model and head
    are kept (a quarter of an hour of CPU): keyed by the rows and the code that scores them,
    so any change to either recomputes them."""
    import hashlib

    digest = hashlib.sha256(json.dumps(
        [[(e.text, e.label, e.source, e.kind) for e in examples], folds,
         [(ROOT / name).read_text(encoding="utf-8") for name in CACHE_KEY_FILES]]).encode())
    return LOSO_CACHE / f"loso-{digest.hexdigest()[:32]}.json"


def generalisation(deepset: Path | None, folds: int) -> dict[str, Any]:
    """Leave-one-source-out and row-level k-fold over the corpus (+ deepset train)."""
    from evals.detector.embedcache import embed
    from evals.loso import kfold, loso, with_encoder

    examples = training_examples([TRAIN_FILE], deepset)
    vectors = embed([e.text for e in examples])

    def progress(source: str, _models: Any) -> None:
        print(f"  left out {source}", file=sys.stderr, flush=True)

    cached = _loso_cache(examples, folds)
    if cached.exists():
        stored = json.loads(cached.read_text(encoding="utf-8"))
        by_source, flags = stored["loso"], stored["kfold"]
    else:
        by_source = loso(examples, vectors, progress)
        flags = kfold(examples, vectors, folds)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"loso": by_source, "kfold": flags}), encoding="utf-8")
    per_source = source_metrics(examples, by_source)
    encoder = with_encoder(examples, by_source)
    labels = [e.label for e in examples]
    in_distribution = {config: metrics(labels, blocked) for config, blocked in flags.items()}
    report: dict[str, Any] = {"loso": per_source, "kfold": in_distribution,
                              "rows": len(examples)}
    if encoder:
        report["encoder_loso"] = source_metrics(examples, encoder)
    return report


def evaluate(deepset: Path | None, folds: int, scifact: int,
             with_loso: bool = True, with_final: bool = False) -> dict[str, Any]:
    shipped = default_model()
    head = shipped_head()
    results: list[SetResult] = []
    own: list[tuple[str, list[Item]]] = []
    for name in ("attacks", "benign", "holdout_attacks", "holdout_benign"):
        path = OWN_SETS / f"{name}.jsonl"
        own.append((f"own {name} ({path.relative_to(ROOT)})", _read(path)))
    combined = own[0][1] + own[1][1]
    holdout = own[2][1] + own[3][1]
    own.insert(2, ("own attacks + benign", combined))
    own.append(("own holdout attacks + benign", holdout))
    final = _read(OWN_SETS / "final_untouched.jsonl") if with_final else []
    if final:
        own.append(("FINAL untouched set (evals/datasets/security/final_untouched.jsonl)",
                    final))
    own.append(("bundled eval questions (evals/datasets/sample/queries.jsonl)",
                sample_questions()))
    passages = [("sample documents, chunked (examples/knowledge)", knowledge_passages())]
    if scifact:
        passages.append((f"SciFact abstracts, first {scifact} (passages)",
                         scifact_passages(scifact)))
    own += passages
    layers = (*LAYERS, ENCODER_LAYER) if installed_encoder() else LAYERS
    for name, items in own:
        labels = [item.label for item in items]
        for layer in layers:
            note = "shipped weights (never trained on this set)" if layer not in LAYERS[:2] \
                else ""
            results.append(SetResult(name, layer, metrics(labels, _blocked(
                items, layer, shipped, head)), note))
    kinds = _per_kind(own[0][1] + own[3][1] + final, shipped, head, layers[-1])
    passage_items = [item for _name, items in passages for item in items]
    latency_passages = latency(passage_items, shipped)
    latency_messages = latency(combined + holdout, shipped)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    thresholds = (f"n-gram {shipped.threshold} for messages, {shipped.passage_threshold} "
                  "for passages")
    if head is not None:
        thresholds += (f"; embedding head {head.threshold} for messages, "
                       f"{head.passage_threshold} for passages")
    if ENCODER_LAYER in layers:
        from guards.encoder import default_encoder

        thresholds += f"; fine-tuned encoder {default_encoder().threshold} for messages"
    report: dict[str, Any] = {
        "results": results, "kinds": kinds, "thresholds": thresholds,
        "latency_passages": latency_passages, "latency_messages": latency_messages,
        "load": load}
    if with_loso:
        report |= generalisation(deepset, folds)
    return report


def _per_kind(items: Sequence[Item], model: LearnedModel,
              head: SemanticHead | None, layer: str) -> dict[str, Metrics]:
    kinds: dict[str, list[Item]] = {}
    for item in items:
        if item.label == 1:
            kinds.setdefault(item.kind or "other", []).append(item)
    return {kind: metrics([i.label for i in group], _blocked(group, layer, model, head))
            for kind, group in sorted(kinds.items())}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(report: dict[str, Any], command: str) -> str:
    lines = ["# Security evaluation (EV-3)", "",
             f"Reproduce: `{command}`", "",
             "Recall = share of attacks blocked (attack success rate = 1 − recall); "
             "FPR = share of benign texts blocked; balanced accuracy = (recall + 1 − FPR) / 2.",
             "",
             f"Learned thresholds (calibrated on out-of-fold scores of the training rows): "
             f"{report['thresholds']}.", ""]
    if "loso" in report:
        lines += _render_generalisation(report)
    lines += ["## Sets the shipped weights never saw", "",
             "Lines of kind `passage` or "
             "`indirect` and all document chunks are scored as retrieved passages. The "
             "`attacks`/`benign` sets were read during development (rule gaps were fixed), so "
             "their figures are optimistic; the `holdout_*` sets were written afterwards and "
             "never used for tuning, but were read in earlier reports. The FINAL untouched "
             "set was written before the wide-corpus detector was trained and was never "
             "used for any choice.",
             "", "| set | layers | attacks | recall | attack success | benign | FPR | "
             "balanced acc. | note |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| --- |"]
    for r in report["results"]:
        m = r.result
        success = None if m.recall is None else 1.0 - m.recall
        lines.append(f"| {r.name} | {r.layer} | {m.attacks} | {_fmt(m.recall)} | "
                     f"{_fmt(success)} | {m.benign} | {_fmt(m.fpr)} | "
                     f"{_fmt(m.balanced_accuracy)} | {r.note} |")
    lines += ["", "## Recall by kind of attack (own dev, holdout and final attack sets, all "
              "layers)", "",
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


def _cell(m: Metrics) -> str:
    parts = []
    if m.attacks:
        parts.append(f"recall {_fmt(m.recall)}")
    if m.benign:
        parts.append(f"FPR {_fmt(m.fpr)}")
    return ", ".join(parts) or "–"


ENCODER_COLUMNS = ("n-gram+embedding", "encoder", "n-gram+embedding+encoder")


def _render_generalisation(report: dict[str, Any]) -> list[str]:
    configs = list(next(iter(report["loso"].values())))
    lines = ["## Leave-one-source-out (predicts sets never seen)", "",
             f"{report['rows']} rows: the corpus (`guards/data/corpus.jsonl`, sources in "
             "`guards/data/PROVENANCE.md`) and the shared deepset train split. Each source is "
             "scored by the full detector with learned layers trained on all *other* sources "
             "and thresholds calibrated on their out-of-fold scores; nothing is tuned on the "
             "left-out source. Overall pools every row, each scored while its source was "
             "left out.", "",
             "| left-out source | attacks | benign | " + " | ".join(configs) + " |",
             "| --- | ---: | ---: | " + " | ".join("---" for _ in configs) + " |"]
    for source, by_config in report["loso"].items():
        first = next(iter(by_config.values()))
        name = f"**{source}**" if source.startswith("overall") else source
        lines.append(f"| {name} | {first.attacks} | {first.benign} | "
                     + " | ".join(_cell(by_config[c]) for c in configs) + " |")
    if "encoder_loso" in report:
        lines += ["", "## The fine-tuned encoder, leave-one-family-out", "",
                  "From `python -m evals.detector.encoder loso` (`make encoder-loso`): one "
                  "fine-tune per left-out *family* of sources (`FAMILIES` in "
                  "`evals/detector/encoder.py`), so each row is scored by an encoder that "
                  "never saw any source of its family. Each fold's threshold is set on the "
                  "other done families' out-of-family benign message scores only (0.4% of "
                  "them above it). `encoder` = rules + decoders + the encoder; the encoder "
                  "reads messages, passages get the rules only. Only the families whose fold "
                  "finished are listed, and `overall` pools those rows only; the first column "
                  "repeats the shipped layers on the same rows. Not in the k-fold below.", "",
                  "| left-out source | attacks | benign | " + " | ".join(ENCODER_COLUMNS)
                  + " |", "| --- | ---: | ---: | " + " | ".join("---" for _ in ENCODER_COLUMNS)
                  + " |"]
        for source, by_config in report["encoder_loso"].items():
            first = next(iter(by_config.values()))
            name = f"**{source}**" if source.startswith("overall") else source
            lines.append(f"| {name} | {first.attacks} | {first.benign} | "
                         + " | ".join(_cell(by_config[c]) for c in ENCODER_COLUMNS) + " |")
    lines += ["", "## In-distribution k-fold (optimistic sanity check)", "",
              "Row-level folds over the same rows: every source is seen in training.", "",
              "| configuration | recall | FPR |", "| --- | ---: | ---: |"]
    for config, m in report["kfold"].items():
        lines.append(f"| {config} | {_fmt(m.recall)} | {_fmt(m.fpr)} |")
    return [*lines, ""]


def _as_json(report: dict[str, Any]) -> dict[str, Any]:
    def m(x: Metrics) -> dict[str, Any]:
        return {"attacks": x.attacks, "benign": x.benign, "detected": x.detected,
                "false_positives": x.false_positives, "recall": x.recall, "fpr": x.fpr,
                "balanced_accuracy": x.balanced_accuracy}

    extra: dict[str, Any] = {}
    if "loso" in report:
        extra = {"loso": {s: {c: m(x) for c, x in by.items()}
                          for s, by in report["loso"].items()},
                 "encoder_loso": {s: {c: m(x) for c, x in by.items()}
                                  for s, by in report.get("encoder_loso", {}).items()},
                 "kfold": {c: m(x) for c, x in report["kfold"].items()}}
    return {**extra,
            "results": [{"set": r.name, "layer": r.layer, "note": r.note, **m(r.result)}
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
    parser.add_argument("--final", action="store_true",
                        help="also score the final untouched set (once, when done)")
    parser.add_argument("--no-loso", action="store_true",
                        help="skip leave-one-source-out and k-fold (minutes of training)")
    args = parser.parse_args(argv)
    deepset = None if args.no_deepset else args.deepset
    if deepset is not None and not deepset.exists():
        print(f"error: {deepset} not found (use --no-deepset)", file=sys.stderr)
        return 2
    scifact = args.scifact if (ROOT.parent / "shared" / "datasets" / "scifact").exists() else 0
    report = evaluate(deepset, args.folds, scifact, with_loso=not args.no_loso,
                      with_final=args.final)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m evals.security " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "security.md").write_text(render(report, command.strip()), encoding="utf-8")
    (args.out / "security.json").write_text(json.dumps(_as_json(report), indent=2) + "\n",
                                            encoding="utf-8")
    print(render(report, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
