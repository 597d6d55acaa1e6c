"""The semantic layer of SEC-2: a logistic-regression head on the sentence embedding.

The bot already embeds every question (and every chunk) with all-MiniLM-L6-v2 for
retrieval; a linear head on that vector costs one dot product and sees meaning, not
spelling, so it catches paraphrased attacks the n-gram model has no words for. Trained by
`python -m evals.detector.train` and shipped as plain JSON numbers (`guards/data/semantic.json`),
never pickled. The head only applies to vectors of the model it was trained on: a
deployment embedding with another model (an OpenAI-compatible API) gets the n-gram layer
only, and a damaged weights file raises `DetectorUnavailableError` (fail closed).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from guards.learned import DetectorUnavailableError, read_weights

FORMAT = 1
DEFAULT_HEAD = Path(__file__).parent / "data" / "semantic.json"
MODEL = "all-MiniLM-L6-v2"
SEMANTIC_RULE = "semantic"
"""Rule name in verdicts and the audit when the head blocks a message."""


@dataclass(frozen=True, slots=True)
class SemanticHead:
    model: str
    """The embedding model whose vectors the head reads (its `model_name`)."""
    weights: npt.NDArray[np.float64]
    intercept: float
    threshold: float
    passage_threshold: float

    def probability(self, vector: Any) -> float:
        z = float(np.dot(self.weights, np.asarray(vector, dtype=np.float64).ravel())) \
            + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= -500 else 0.0

    def blocks(self, vector: Any, source: Literal["message", "passage"] = "message") -> bool:
        bar = self.threshold if source == "message" else self.passage_threshold
        return self.probability(vector) >= bar

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": "logistic regression on the sentence embedding",
                "model": self.model, "dimension": len(self.weights),
                "intercept": _round(self.intercept), "threshold": self.threshold,
                "passage_threshold": self.passage_threshold,
                "weights": [_round(float(w)) for w in self.weights]}


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DetectorUnavailableError(f"semantic head: {name} is not a finite number")
    return float(value)


def parse_head(data: Any) -> SemanticHead:
    """Validate the weights document; anything unexpected is refused, never guessed."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DetectorUnavailableError(f"semantic head: unknown format (expected {FORMAT})")
    weights = data.get("weights")
    if not isinstance(weights, list) or not weights or len(weights) != data.get("dimension"):
        raise DetectorUnavailableError("semantic head: weights missing or of the wrong size")
    values = np.array([_number(w, "weights") for w in weights], dtype=np.float64)
    threshold = _number(data.get("threshold"), "threshold")
    passage = _number(data.get("passage_threshold"), "passage_threshold")
    if not (0.0 < threshold < 1.0 and 0.0 < passage < 1.0):
        raise DetectorUnavailableError("semantic head: thresholds must be in (0, 1)")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise DetectorUnavailableError("semantic head: model name missing")
    return SemanticHead(model=model, weights=values,
                        intercept=_number(data.get("intercept"), "intercept"),
                        threshold=threshold, passage_threshold=passage)


def load_head(path: Path) -> SemanticHead:
    return parse_head(read_weights(path, "semantic head"))


@functools.cache
def default_head(path: Path | None = None) -> SemanticHead:
    """Load the shipped head once, on first use (never at import time)."""
    return load_head(DEFAULT_HEAD if path is None else path)
