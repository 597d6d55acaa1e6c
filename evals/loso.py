"""Leave-one-source-out evaluation of the learned layers (issue 12, EV-3).

For every source of the training corpus: train on all the other sources, calibrate the
thresholds on out-of-fold scores of those training rows only, and score the left-out source
with the full detector (rules, decoders, learned layers) exactly as the bot would. This
predicts performance on attack and benign sets the detector never saw; row-level k-fold
(`kfold`) is reported beside it as the optimistic, in-distribution sanity check.

Three learned configurations are compared: the n-gram logistic regression (`guards.learned`),
a logistic-regression head on the all-MiniLM-L6-v2 sentence embedding
(`guards.semantic`), and both (blocked when either is over its own threshold).

The n-gram features of all rows are computed once; each fold selects its rows and the
n-grams seen in two of its training texts, which is what `evals.detector.train.fit` does on those
rows alone (the runtime scorer then reads the resulting weights, so scoring is the bot's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evals.detector.train import (
    MESSAGE_FPR,
    MIN_PASSAGE_THRESHOLD,
    PASSAGE_FPR,
    C,
    Example,
    _memo,
    folds,
    source_folds,
    threshold_for,
)
from guards.learned import (
    CHAR_NGRAMS,
    FORMAT,
    WORD_NGRAMS,
    LearnedModel,
    analyze_chars,
    analyze_words,
    parse_model,
)
from guards.semantic import SemanticHead
from guards.threats import analyze

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

INNER_FOLDS = 3
CONFIGS = ("rules+decoding", "n-gram", "embedding", "n-gram+embedding")
ENCODER_CONFIGS = ("encoder", "n-gram+embedding+encoder")
"""Added when `python -m evals.detector.encoder loso` has written its out-of-family scores
for these very rows (one fine-tune per left-out family; see `encoder_flags`)."""


class NgramMatrix:
    """Binary n-gram presence of every example, and the per-text normalisers."""

    def __init__(self, texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.chars = CountVectorizer(analyzer=_memo(analyze_chars), binary=True).fit(texts)
        self.words = CountVectorizer(analyzer=_memo(analyze_words), binary=True).fit(texts)
        self.xc = self.chars.transform(texts).tocsc()
        self.xw = self.words.transform(texts).tocsc()
        self.char_names = self.chars.get_feature_names_out()
        self.word_names = self.words.get_feature_names_out()
        self.nc = np.array([1 / math.sqrt(max(len(_memo(analyze_chars)(t)), 1)) for t in texts])
        self.nw = np.array([1 / math.sqrt(max(len(_memo(analyze_words)(t)), 1)) for t in texts])

    def fit(self, rows: Sequence[int], labels: Sequence[int], c: float = C) -> LearnedModel:
        """As `evals.detector.train.fit` on these rows (min_df 2 within them), as a runtime
        model."""
        from scipy.sparse import diags, hstack
        from sklearn.linear_model import LogisticRegression

        index = np.asarray(rows)
        blocks: list[csr_matrix] = []
        kept: list[np.ndarray] = []
        for matrix, norm in ((self.xc, self.nc), (self.xw, self.nw)):
            part = matrix[index].tocsr()
            df = np.asarray(part.sum(axis=0)).ravel()
            columns = np.flatnonzero(df >= 2)
            kept.append(columns)
            blocks.append(diags(norm[index]) @ part[:, columns])
        classifier = LogisticRegression(C=c, class_weight="balanced", solver="liblinear",
                                        dual=True, random_state=0, max_iter=1000)
        classifier.fit(hstack(blocks).tocsr(), [labels[i] for i in rows])
        coef = classifier.coef_[0]
        split = len(kept[0])
        document = {
            "format": FORMAT, "char_ngrams": list(CHAR_NGRAMS), "word_ngrams": list(WORD_NGRAMS),
            "intercept": float(classifier.intercept_[0]), "threshold": 0.5,
            "passage_threshold": 0.5,
            "char_weights": {str(self.char_names[j]): float(w)
                             for j, w in zip(kept[0], coef[:split], strict=True) if w},
            "word_weights": {str(self.word_names[j]): float(w)
                             for j, w in zip(kept[1], coef[split:], strict=True) if w}}
        return parse_model(document)


def fit_head(vectors: np.ndarray, labels: Sequence[int]) -> SemanticHead:
    from evals.detector.train import fit_head as train_head

    return train_head(vectors, labels)


@dataclass(frozen=True, slots=True)
class Thresholds:
    message: float
    passage: float


def _calibrated(examples: Sequence[Example], scores: Sequence[float]) -> Thresholds:
    benign = [(e.kind, s) for e, s in zip(examples, scores, strict=True) if e.label == 0]
    message = threshold_for([s for k, s in benign if k == "message"], MESSAGE_FPR)
    passage = max(threshold_for([s for k, s in benign if k == "passage"], PASSAGE_FPR,
                                floor=message), MIN_PASSAGE_THRESHOLD)
    return Thresholds(message, passage)


@dataclass
class Models:
    ngram: LearnedModel
    head: SemanticHead | None


def train_calibrated(rows: Sequence[int], examples: Sequence[Example], matrix: NgramMatrix,
                     vectors: np.ndarray | None) -> Models:
    """Models on `rows`, thresholds from inner out-of-fold scores of the same rows (folds of
    whole sources, as `evals.detector.train` calibrates)."""
    labels = [e.label for e in examples]
    subset = [examples[i] for i in rows]
    ngram_scores = [0.0] * len(rows)
    head_scores = [0.0] * len(rows)
    for fold in source_folds(subset, INNER_FOLDS):
        held = set(fold)
        train = [rows[j] for j in range(len(rows)) if j not in held]
        model = matrix.fit(train, labels)
        head = fit_head(vectors[train], [labels[i] for i in train]) \
            if vectors is not None else None
        for j in fold:
            ngram_scores[j] = model.probability(subset[j].text)
            if head is not None and vectors is not None:
                head_scores[j] = head.probability(vectors[rows[j]])
    t_ngram = _calibrated(subset, ngram_scores)
    ngram = dataclasses.replace(matrix.fit(list(rows), labels), threshold=t_ngram.message,
                                passage_threshold=t_ngram.passage)
    head = None
    if vectors is not None:
        t_head = _calibrated(subset, head_scores)
        head = dataclasses.replace(fit_head(vectors[list(rows)], [labels[i] for i in rows]),
                                   threshold=t_head.message, passage_threshold=t_head.passage)
    return Models(ngram, head)


def verdicts(examples: Sequence[Example], rows: Sequence[int], models: Models,
             vectors: np.ndarray | None, rules: Sequence[bool]) -> dict[str, list[bool]]:
    """Blocked flags of each configuration for `rows`."""
    out: dict[str, list[bool]] = {name: [] for name in CONFIGS}
    for i in rows:
        e = examples[i]
        source: Literal["message", "passage"] = \
            "passage" if e.kind == "passage" else "message"
        ngram = analyze(e.text, source=source, model=models.ngram).blocked
        emb = rules[i]
        if models.head is not None and vectors is not None and source == "message":
            emb = rules[i] or models.head.blocks(vectors[i], source)  # messages only
        out["rules+decoding"].append(rules[i])
        out["n-gram"].append(ngram)
        out["embedding"].append(emb)
        out["n-gram+embedding"].append(ngram or emb)
    return out


def rules_only(examples: Sequence[Example]) -> list[bool]:
    return [analyze(e.text, source="passage" if e.kind == "passage" else "message",
                    learned=False).blocked for e in examples]


def encoder_flags(examples: Sequence[Example], rules: Sequence[bool]
                  ) -> dict[int, bool] | None:
    """Rules or the fine-tuned encoder, for the rows of every family whose fold is done:
    each row scored by an encoder fine-tuned without its source's family, against a
    threshold calibrated on the other done families' out-of-family scores only. Messages
    only (passages: rules), as the bot runs it. None when no scores exist for these rows."""
    import hashlib
    import json

    from evals.detector.encoder import OOF_FILE, fold_thresholds

    if not OOF_FILE.exists():
        return None
    oof = json.loads(OOF_FILE.read_text(encoding="utf-8"))
    digest = hashlib.sha256("\n".join(e.text for e in examples).encode()).hexdigest()
    if oof.get("texts_sha256") != digest or not oof.get("folds"):
        return None
    thresholds = fold_thresholds(examples, oof)
    flags: dict[int, bool] = {}
    for family, fold in oof["folds"].items():
        for i, score in zip(fold["rows"], fold["scores"], strict=True):
            flags[i] = rules[i] or (examples[i].kind == "message"
                                    and score >= thresholds[family])
    return flags


def with_encoder(examples: Sequence[Example], results: dict[str, dict[str, list[bool]]]
                 ) -> dict[str, dict[str, list[bool]]]:
    """The sources whose family has encoder scores, with the encoder configurations added
    (empty when there are none)."""
    encoder = encoder_flags(examples, rules_only(examples))
    if encoder is None:
        return {}
    out: dict[str, dict[str, list[bool]]] = {}
    for source, flags in results.items():
        held = [i for i, e in enumerate(examples) if e.source == source]
        if not all(i in encoder for i in held):
            continue
        out[source] = {"n-gram+embedding": flags["n-gram+embedding"],
                       ENCODER_CONFIGS[0]: [encoder[i] for i in held],
                       ENCODER_CONFIGS[1]: [a or encoder[i] for a, i in zip(
                           flags["n-gram+embedding"], held, strict=True)]}
    return out


def loso(examples: Sequence[Example], vectors: np.ndarray | None,
         progress: Any = None) -> dict[str, dict[str, list[bool]]]:
    """Per left-out source: blocked flags of each configuration for that source's rows."""
    matrix = NgramMatrix([e.text for e in examples])
    rules = rules_only(examples)
    results: dict[str, dict[str, list[bool]]] = {}
    for source in sorted({e.source for e in examples}):
        held = [i for i, e in enumerate(examples) if e.source == source]
        train = [i for i, e in enumerate(examples) if e.source != source]
        models = train_calibrated(train, examples, matrix, vectors)
        results[source] = verdicts(examples, held, models, vectors, rules)
        if progress is not None:
            progress(source, models)
    return results


def kfold(examples: Sequence[Example], vectors: np.ndarray | None,
          k: int = 5) -> dict[str, list[bool]]:
    """Row-level k-fold over all sources together (in-distribution), in example order."""
    matrix = NgramMatrix([e.text for e in examples])
    rules = rules_only(examples)
    flags: dict[str, list[bool]] = {name: [False] * len(examples) for name in CONFIGS}
    for fold in folds(examples, k):
        held = set(fold)
        models = train_calibrated([i for i in range(len(examples)) if i not in held],
                                  examples, matrix, vectors)
        got = verdicts(examples, fold, models, vectors, rules)
        for name in CONFIGS:
            for index, flag in zip(fold, got[name], strict=True):
                flags[name][index] = flag
    return flags
