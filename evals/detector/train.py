"""Train the learned detector and write its weights as JSON (`python -m evals.detector.train`).

Trains on the wide corpus (`guards/data/corpus.jsonl`, built by `evals.detector.corpus`) plus the
shared deepset train split when ../shared has it (its sha256 is recorded; it is never copied
into the repository). The message and passage thresholds are calibrated on out-of-fold
scores of the training rows only (`calibrate`; folds of whole sources, so the thresholds
are set on sources the model did not see), never on an evaluation set.
scikit-learn is needed here and in the security evaluation only; the bot scores with
`guards.learned`, which reads the JSON this writes. liblinear with a fixed seed and sorted
JSON make the output reproducible from the same training files: byte for byte on one
machine, and within rounding of the last written digit across CPUs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.detector import GUARDS_DATA
from guards.learned import (
    CHAR_NGRAMS,
    DEFAULT_WEIGHTS,
    FORMAT,
    WORD_NGRAMS,
    analyze_chars,
    analyze_words,
)
from guards.semantic import DEFAULT_HEAD, SemanticHead
from guards.semantic import MODEL as SEMANTIC_MODEL

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

TRAIN_FILE = GUARDS_DATA / "corpus.jsonl"
SHARED_DEEPSET = (Path(__file__).resolve().parents[3] / "shared" / "datasets"
                  / "prompt-injection" / "deepset-train.jsonl")
CALIBRATION_FOLDS = 5
MESSAGE_FPR = 0.004
"""Out-of-fold false-positive rate the message threshold allows on benign training messages
(the learned layer's share of the 1% budget; the rules add their own)."""
PASSAGE_FPR = 0.001
C = 4.0
"""Inverse regularisation strength of the logistic regression (solved in the dual, which is
4-5x faster here: far more n-grams than rows)."""
MIN_DF = 2
"""An n-gram must occur in two training texts: one-off n-grams only memorise lines."""
THRESHOLD = 0.6
PASSAGE_THRESHOLD = 0.98
"""Defaults when training without calibration (small ad-hoc sets); `main` calibrates."""
MIN_PASSAGE_THRESHOLD = 0.9
"""Documents talk about prompts, rules and attacks; below this the sample documents' chunks
start to be dropped, so calibration never goes lower for passages."""
SIGNIFICANT = 6
"""Weights are written to 6 significant digits: liblinear's last digits differ across CPUs,
and the scores do not depend on them (the reproduction test compares with a tolerance)."""


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


class TrainingDataError(ValueError):
    """A training file is missing, malformed, or holds a single class."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int
    source: str
    kind: str
    """"message" or "passage" (scored with the passage threshold)."""


def read_examples(path: Path, source: str | None = None) -> list[Example]:
    """Rows with their source and kind (corpus lines carry both; other files get defaults)."""
    examples: list[Example] = []
    raw = path.read_text(encoding="utf-8").split("\n")
    for (text, label), line in zip(read_rows(path), (x for x in raw if x.strip()), strict=True):
        row = json.loads(line)
        kind = "passage" if row.get("kind") in {"passage", "indirect", "document"} else "message"
        examples.append(Example(text, label, source or str(row.get("source") or path.stem),
                                kind))
    return examples


def read_rows(path: Path) -> list[tuple[str, int]]:
    """`{"text": str, "label": 0|1}` per line; a bad line is an error naming its number."""
    rows: list[tuple[str, int]] = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"{path}: {type(exc).__name__}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TrainingDataError(f"{path}:{number}: not valid JSON") from exc
        if (not isinstance(row, dict) or not isinstance(row.get("text"), str)
                or row.get("label") not in (0, 1) or isinstance(row.get("label"), bool)):
            raise TrainingDataError(f"{path}:{number}: expected text and label 0 or 1")
        rows.append((row["text"], int(row["label"])))
    return rows


@dataclass(frozen=True, slots=True)
class Trained:
    chars: CountVectorizer
    words: CountVectorizer
    classifier: LogisticRegression

    def features(self, texts: Sequence[str]) -> csr_matrix:
        return _features(self.chars, self.words, texts)

    def decision_function(self, texts: Sequence[str]) -> Any:
        """sklearn's logits for `texts` (the reference the runtime scorer must equal)."""
        return self.classifier.decision_function(self.features(texts))


def _block(vectorizer: CountVectorizer, analyzer: Any, texts: Sequence[str]) -> csr_matrix:
    """Binary presence of known n-grams, divided by the root of the count of *all* n-grams."""
    import numpy as np
    from scipy.sparse import diags

    counts = vectorizer.transform(texts)
    totals = np.array([max(len(analyzer(text)), 1) for text in texts], dtype=np.float64)
    return diags(1.0 / np.sqrt(totals)) @ counts


def _features(chars: CountVectorizer, words: CountVectorizer,
              texts: Sequence[str]) -> csr_matrix:
    from scipy.sparse import hstack

    return hstack([_block(chars, _memo(analyze_chars), texts),
                   _block(words, _memo(analyze_words), texts)]).tocsr()


_ANALYSED: dict[tuple[str, str], list[str]] = {}


def _memo(analyzer: Any) -> Any:
    """The same analyzer, remembering each text's n-grams: cross-validation refits often."""
    name = analyzer.__name__

    def analyse(text: str) -> list[str]:
        key = (name, text)
        grams = _ANALYSED.get(key)
        if grams is None:
            grams = _ANALYSED[key] = analyzer(text)
        return grams

    analyse.__name__ = name
    return analyse


def fit(rows: Sequence[tuple[str, int]], c: float = C) -> Trained:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    labels = {label for _text, label in rows}
    if labels != {0, 1}:
        raise TrainingDataError("training data must hold both labels 0 and 1")
    texts = [text for text, _label in rows]
    chars = CountVectorizer(analyzer=_memo(analyze_chars), binary=True, min_df=MIN_DF).fit(texts)
    words = CountVectorizer(analyzer=_memo(analyze_words), binary=True, min_df=MIN_DF).fit(texts)
    classifier = LogisticRegression(C=c, class_weight="balanced", solver="liblinear",
                                    dual=True, random_state=0, max_iter=1000)
    classifier.fit(_features(chars, words, texts), [label for _text, label in rows])
    return Trained(chars, words, classifier)


def export(trained: Trained, *, threshold: float = THRESHOLD,
           passage_threshold: float = PASSAGE_THRESHOLD,
           sources: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON document `guards.learned.parse_model` reads."""
    import sklearn

    chars, words = trained.chars.vocabulary_, trained.words.vocabulary_
    coef = trained.classifier.coef_[0]
    offset = len(chars)
    return {
        "format": FORMAT,
        "kind": "logistic regression, binary n-gram presence, L2 over all n-grams per block",
        "char_ngrams": list(CHAR_NGRAMS),
        "word_ngrams": list(WORD_NGRAMS),
        "intercept": _round(float(trained.classifier.intercept_[0])),
        "threshold": threshold,
        "passage_threshold": passage_threshold,
        "training": {"sources": sources or {}, "c": trained.classifier.C, "min_df": MIN_DF,
                     "scikit_learn": sklearn.__version__},
        "char_weights": {g: _round(float(coef[i])) for g, i in sorted(chars.items())},
        "word_weights": {g: _round(float(coef[offset + i]))
                         for g, i in sorted(words.items())},
    }


HEAD_C = 4.0
"""Inverse regularisation of the embedding head (set a priori, like the n-gram model's)."""


def fit_head(vectors: Any, labels: Sequence[int], c: float = HEAD_C) -> SemanticHead:
    """Logistic regression on sentence embeddings; thresholds are set by the caller."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    classifier.fit(np.asarray(vectors, dtype=np.float64), list(labels))
    return SemanticHead(model=SEMANTIC_MODEL, weights=classifier.coef_[0].astype(np.float64),
                        intercept=float(classifier.intercept_[0]), threshold=THRESHOLD,
                        passage_threshold=PASSAGE_THRESHOLD)


def train_head(examples: Sequence[Example], vectors: Any,
               k: int = CALIBRATION_FOLDS) -> SemanticHead:
    """The embedding head on all examples, thresholds calibrated out of fold."""
    import dataclasses

    import numpy as np

    vectors = np.asarray(vectors)
    labels = [e.label for e in examples]
    scores = [0.0] * len(examples)
    for fold in source_folds(examples, k):
        held = set(fold)
        train = [i for i in range(len(examples)) if i not in held]
        head = fit_head(vectors[train], [labels[i] for i in train])
        for index in fold:
            scores[index] = head.probability(vectors[index])
    message, passage = calibrate(examples, scores)
    return dataclasses.replace(fit_head(vectors, labels), threshold=message,
                               passage_threshold=passage)


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def source_folds(examples: Sequence[Example], k: int) -> list[list[int]]:
    """Folds of whole sources (largest first into the smallest fold): calibrating on scores
    of sources the model did not see sets thresholds for unseen text, which row-level folds
    (every source seen) set far too low (1.3% false alarms on left-out sources, not 0.4%)."""
    sizes: dict[str, int] = {}
    for e in examples:
        sizes[e.source] = sizes.get(e.source, 0) + 1
    groups: list[list[str]] = [[] for _ in range(min(k, len(sizes)))]
    totals = [0] * len(groups)
    for source in sorted(sizes, key=lambda name: (-sizes[name], name)):
        smallest = totals.index(min(totals))
        groups[smallest].append(source)
        totals[smallest] += sizes[source]
    where = {source: g for g, names in enumerate(groups) for source in names}
    out: list[list[int]] = [[] for _ in groups]
    for index, e in enumerate(examples):
        out[where[e.source]].append(index)
    return out


def folds(examples: Sequence[Example], k: int, seed: int = 7) -> list[list[int]]:
    """Stratified, seeded fold assignment (by label and kind)."""
    import random

    rng = random.Random(seed)  # noqa: S311 - reproducible folds, not secrecy
    out: list[list[int]] = [[] for _ in range(k)]
    position = 0
    for group in sorted({(e.label, e.kind) for e in examples}):
        indices = [i for i, e in enumerate(examples) if (e.label, e.kind) == group]
        rng.shuffle(indices)
        for index in indices:
            out[position % k].append(index)
            position += 1
    return out


def out_of_fold(examples: Sequence[Example], k: int = CALIBRATION_FOLDS,
                c: float = C) -> list[float]:
    """Each example's learned probability from a model trained without its source's fold."""
    from guards.learned import parse_model

    scores = [0.0] * len(examples)
    for fold in source_folds(examples, k):
        held = set(fold)
        model = parse_model(json.loads(dumps(export(fit(
            [(e.text, e.label) for i, e in enumerate(examples) if i not in held], c)))))
        for index in fold:
            scores[index] = model.probability(examples[index].text)
    return scores


def threshold_for(benign_scores: Sequence[float], fpr: float, floor: float = 0.5) -> float:
    """The lowest threshold (≥ floor) blocking at most `fpr` of these benign scores."""
    ordered = sorted(benign_scores, reverse=True)
    allowed = int(fpr * len(ordered))
    bar = ordered[allowed] if allowed < len(ordered) else 0.0
    return min(max(floor, math.floor(bar * 1e4 + 1) / 1e4), 0.9999)  # just above `bar`


def calibrate(examples: Sequence[Example], scores: Sequence[float]) -> tuple[float, float]:
    """(message, passage) thresholds from out-of-fold scores of the training rows."""
    messages = [s for e, s in zip(examples, scores, strict=True)
                if e.label == 0 and e.kind == "message"]
    passages = [s for e, s in zip(examples, scores, strict=True)
                if e.label == 0 and e.kind == "passage"]
    message = threshold_for(messages, MESSAGE_FPR)
    return message, max(threshold_for(passages, PASSAGE_FPR, floor=message),
                        MIN_PASSAGE_THRESHOLD)


def training_examples(paths: Iterable[Path], shared: Path | None) -> list[Example]:
    examples = [e for path in paths for e in read_examples(path)]
    if shared is not None:
        examples += read_examples(shared, source="deepset-train")
    return examples


def train_files(paths: Iterable[Path], *, c: float = C, threshold: float | None = THRESHOLD,
                shared: Path | None = None) -> dict[str, Any]:
    """Train on `paths` (+ `shared`); `threshold=None` calibrates both thresholds."""
    paths = list(paths)
    sources = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
               for path in [*paths, *([shared] if shared else [])]}
    examples = training_examples(paths, shared)
    rows = [(e.text, e.label) for e in examples]
    if threshold is None:
        message, passage = calibrate(examples, out_of_fold(examples, c=c))
        return export(fit(rows, c), threshold=message, passage_threshold=passage,
                      sources=sources)
    return export(fit(rows, c), threshold=threshold, sources=sources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, action="append",
                        help=f"training JSONL (repeatable; default {TRAIN_FILE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--c", type=float, default=C)
    parser.add_argument("--threshold", type=float, default=None,
                        help="fixed message threshold (default: calibrated out of fold)")
    parser.add_argument("--shared", type=Path, default=SHARED_DEEPSET,
                        help="the deepset train split, used when the file exists")
    parser.add_argument("--no-shared", action="store_true")
    parser.add_argument("--semantic-out", type=Path, default=DEFAULT_HEAD,
                        help="where the embedding head goes (needs the local embedder)")
    parser.add_argument("--no-semantic", dest="semantic_out", action="store_const", const=None)
    args = parser.parse_args(argv)
    shared = None if args.no_shared or not args.shared.exists() else args.shared
    try:
        document = train_files(args.data or [TRAIN_FILE], c=args.c, threshold=args.threshold,
                               shared=shared)
    except TrainingDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(document), encoding="utf-8")
    print(f"wrote {args.out}: {len(document['char_weights'])} character and "
          f"{len(document['word_weights'])} word n-grams, thresholds {document['threshold']} "
          f"(messages) and {document['passage_threshold']} (passages)")
    if args.semantic_out is not None:
        from evals.detector.embedcache import embed

        examples = training_examples(args.data or [TRAIN_FILE], shared)
        head = train_head(examples, embed([e.text for e in examples]))
        head_doc = head.to_json() | {"training": document["training"]}
        args.semantic_out.write_text(dumps(head_doc), encoding="utf-8")
        print(f"wrote {args.semantic_out}: thresholds {head.threshold} (messages) and "
              f"{head.passage_threshold} (passages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
