"""The learned layer of SEC-2: logistic regression over character and word n-grams.

Trained by `python -m evals.detector.train` (scikit-learn, training time only) and shipped as plain
JSON weights: this codebase never unpickles anything. Scoring is reimplemented here in pure
Python because sklearn's per-call input validation costs more than the whole check budget
(well under 1 ms per passage); `tests/unit/guards/test_learned.py` proves the scores equal
sklearn's. Features are binary n-gram presence, L2-normalised per block over *all* n-grams of
the text, known or not (as a collision-free HashingVectorizer would): normalising over known
n-grams only let one familiar word in an unfamiliar text carry the whole score. Only the
vocabulary and its weights need to be stored.
Fails closed: a missing or damaged weights file raises `DetectorUnavailableError`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guards.textnorm import views

FORMAT = 1
DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "detector.json"
CHAR_NGRAMS = (3, 4)
WORD_NGRAMS = (1, 2)
MAX_FEATURE_CHARS = 4000
"""`decision` (and training) score longer text on its first and last 2,000 characters; the
detector itself scores windows of `WINDOW_CHARS`, so it never gets near this bound."""


class DetectorUnavailableError(RuntimeError):
    """The weights file is missing or damaged: callers must refuse, not pass text through."""


WINDOW_CHARS = 400
"""Texts longer than this are scored per window of whole sentences, and the highest counts."""
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")


def windows(text: str, size: int = WINDOW_CHARS) -> list[str]:
    """Sentence-aligned windows of at most about `size` characters.

    A retrieved passage is long and mostly harmless; scored whole, many weakly suspicious
    common words add up, and one injected sentence is diluted by the rest. Per window, a
    passage is scored like the short messages the model is trained on.
    """
    if len(text) <= size:
        return [text]
    chunks: list[str] = []
    current = ""
    for piece in _SENTENCE_END.split(text):
        sentence = piece
        while len(sentence) > size:  # a run-on "sentence": cut it, no window grows unbounded
            chunks.extend([current] if current else [])
            current = ""
            space = sentence.rfind(" ", size // 2, size)  # cut between words when possible
            cut = space if space > 0 else size
            chunks.append(sentence[:cut])
            sentence = sentence[cut:]
        if current and len(current) + len(sentence) + 1 > size:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()] or [text[:size]]


def word_view(text: str) -> str:
    if len(text) > MAX_FEATURE_CHARS:
        half = MAX_FEATURE_CHARS // 2
        text = f"{text[:half]} {text[-half:]}"
    return views(text)[1]


_WORD_GRAMS: dict[tuple[int, int], dict[str, frozenset[str]]] = {}
_WORD_GRAMS_MAX = 50_000


def _grams_of_word(word: str, low: int, high: int) -> frozenset[str]:
    """Character n-grams of one word padded with spaces (sklearn's "char_wb")."""
    padded = f" {word} "
    grams = frozenset(padded[i:i + n] for n in range(low, high + 1)
                      for i in range(len(padded) - n + 1))
    return grams or frozenset({padded})


def char_features(folded: str, ngrams: tuple[int, int] = CHAR_NGRAMS) -> set[str]:
    """Character n-grams within each word of the folded text (word edges included).

    Memoised per word: words repeat across passages, and slicing every window anew was most
    of the detector's cost.
    """
    cache = _WORD_GRAMS.get(ngrams)
    if cache is None or len(cache) >= _WORD_GRAMS_MAX:
        cache = _WORD_GRAMS[ngrams] = {}
    low, high = ngrams
    parts = []
    for word in set(folded.split()):
        grams = cache.get(word)
        if grams is None:
            grams = cache[word] = _grams_of_word(word, low, high)
        parts.append(grams)
    return set().union(*parts)


def word_features(folded: str, ngrams: tuple[int, int] = WORD_NGRAMS) -> set[str]:
    tokens = folded.split()
    grams = set(tokens) if ngrams[0] <= 1 <= ngrams[1] else set()
    for n in range(max(ngrams[0], 2), ngrams[1] + 1):
        grams.update(map(" ".join, zip(*(tokens[i:] for i in range(n)), strict=False)))
    return grams


def analyze_chars(text: str) -> list[str]:
    """The sklearn analyzer of the character block (training uses exactly this function)."""
    return sorted(char_features(word_view(text)))


def analyze_words(text: str) -> list[str]:
    return sorted(word_features(word_view(text)))


@dataclass(frozen=True, slots=True)
class LearnedModel:
    char_weights: dict[str, float]
    word_weights: dict[str, float]
    char_vocab: frozenset[str]
    word_vocab: frozenset[str]
    intercept: float
    threshold: float
    """Probability at or above which the learned layer alone blocks a user message."""
    passage_threshold: float
    """The same for retrieved passages and ingested chunks: documents are long and talk about
    the same things attacks do (prompts, rules, security), so the bar is higher there."""
    char_ngrams: tuple[int, int]
    word_ngrams: tuple[int, int]

    def decision(self, text: str) -> float:
        """The logit; equals sklearn's `decision_function` on the same text."""
        return self.decision_of_view(word_view(text))

    def decision_of_view(self, folded: str) -> float:
        """The logit of an already folded word view (`textnorm.views(text)[1]`)."""
        total = self.intercept
        for grams, vocab, weights in (
                (char_features(folded, self.char_ngrams), self.char_vocab, self.char_weights),
                (word_features(folded, self.word_ngrams), self.word_vocab, self.word_weights)):
            present = grams & vocab
            if present:
                total += sum(map(weights.__getitem__, present)) / math.sqrt(len(grams))
        return total

    def probability(self, text: str) -> float:
        """The highest probability over the text's windows (see `windows`)."""
        return self.probability_of_views([views(window)[1] for window in windows(text)])

    def probability_of_views(self, folded_windows: list[str]) -> float:
        z = max(self.decision_of_view(folded[:MAX_FEATURE_CHARS])
                for folded in folded_windows or [""])
        return 1.0 / (1.0 + math.exp(-z)) if z >= -500 else 0.0


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DetectorUnavailableError(f"detector weights: {name} is not a finite number")
    return float(value)


def _weights(value: Any, name: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise DetectorUnavailableError(f"detector weights: {name} is missing or empty")
    return {str(k): _number(v, name) for k, v in value.items()}


def _ngrams(value: Any, name: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and 0 < v < 10 for v in value) or value[0] > value[1]):
        raise DetectorUnavailableError(f"detector weights: {name} is not an n-gram range")
    return value[0], value[1]


def parse_model(data: Any) -> LearnedModel:
    """Validate the weights document; anything unexpected is refused, never guessed."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DetectorUnavailableError(
            f"detector weights: unknown format (expected format {FORMAT})")
    chars, words = _weights(data.get("char_weights"), "char_weights"), \
        _weights(data.get("word_weights"), "word_weights")
    threshold = _number(data.get("threshold"), "threshold")
    passage_threshold = _number(data.get("passage_threshold"), "passage_threshold")
    if not (0.0 < threshold < 1.0 and 0.0 < passage_threshold < 1.0):
        raise DetectorUnavailableError("detector weights: thresholds must be in (0, 1)")
    return LearnedModel(char_weights=chars, word_weights=words,
                        char_vocab=frozenset(chars), word_vocab=frozenset(words),
                        intercept=_number(data.get("intercept"), "intercept"),
                        threshold=threshold, passage_threshold=passage_threshold,
                        char_ngrams=_ngrams(data.get("char_ngrams"), "char_ngrams"),
                        word_ngrams=_ngrams(data.get("word_ngrams"), "word_ngrams"))


def read_weights(path: Path, what: str) -> Any:
    """The parsed JSON of a shipped weights file; an unreadable or malformed file is a
    DetectorUnavailableError naming `what`, so the guard fails closed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DetectorUnavailableError(
            f"{what} not readable at {path}: {type(exc).__name__}") from exc
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DetectorUnavailableError(f"{what} at {path} is not valid JSON") from exc


def load_model(path: Path) -> LearnedModel:
    return parse_model(read_weights(path, "detector weights"))


@functools.cache
def default_model(path: Path | None = None) -> LearnedModel:
    """Load the shipped weights once, on first use (never at import time); tests that
    swap the file call `default_model.cache_clear()`."""
    return load_model(DEFAULT_WEIGHTS if path is None else path)
