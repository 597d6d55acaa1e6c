"""Score labelled or unlabelled prompt sets: parsing, verdict rows and detection metrics.

Pure helpers shared by `signal-rag guard scan` and the security evaluation. A malformed line
is an error naming its line number, never its text (it may be an attack or private data):
a scan that silently skipped lines would report figures for a set it did not read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guards.threats import ThreatVerdict


class ScanInputError(ValueError):
    """A line of the input is not `{"text": str}` with an optional label 0 or 1."""


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    label: int | None = None
    kind: str | None = None
    """Optional free-form group name (e.g. "encoded") for per-kind recall in reports."""


def json_lines(raw: str) -> list[str]:
    """JSON Lines split on "\\n" only (a trailing "\\r" is JSON whitespace).

    `str.splitlines` also splits on U+2028/U+2029 and other separators, which JSON allows
    unescaped inside strings and which attack corpora contain.
    """
    return raw.split("\n")


def parse_lines(lines: Iterable[str]) -> list[Item]:
    items: list[Item] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise ScanInputError(f"line {number}: not valid JSON") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ScanInputError(f"line {number}: expected an object with a string \"text\"")
        label = row.get("label")
        if label is not None and (isinstance(label, bool) or label not in (0, 1)):
            raise ScanInputError(f"line {number}: \"label\" must be 0 or 1")
        kind = row.get("kind")
        items.append(Item(text=row["text"], label=label,
                          kind=kind if isinstance(kind, str) else None))
    return items


def verdict_row(verdict: ThreatVerdict) -> dict[str, Any]:
    return {"blocked": verdict.blocked, "score": verdict.score,
            "categories": list(verdict.categories), "reason": verdict.reason}


@dataclass(frozen=True, slots=True)
class Metrics:
    attacks: int
    benign: int
    detected: int
    false_positives: int

    @property
    def recall(self) -> float | None:
        return self.detected / self.attacks if self.attacks else None

    @property
    def fpr(self) -> float | None:
        return self.false_positives / self.benign if self.benign else None

    @property
    def balanced_accuracy(self) -> float | None:
        if self.recall is None or self.fpr is None:
            return None
        return (self.recall + 1.0 - self.fpr) / 2.0


def metrics(labels: Sequence[int | None], blocked: Sequence[bool]) -> Metrics:
    """Recall on label 1, false positives on label 0; unlabelled items are not counted."""
    pairs = [(label, hit) for label, hit in zip(labels, blocked, strict=True)
             if label is not None]
    return Metrics(attacks=sum(1 for label, _ in pairs if label == 1),
                   benign=sum(1 for label, _ in pairs if label == 0),
                   detected=sum(1 for label, hit in pairs if label == 1 and hit),
                   false_positives=sum(1 for label, hit in pairs if label == 0 and hit))


def describe(m: Metrics) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (f"recall {pct(m.recall)} ({m.detected}/{m.attacks} attacks), "
            f"false-positive rate {pct(m.fpr)} ({m.false_positives}/{m.benign} benign), "
            f"balanced accuracy {pct(m.balanced_accuracy)}")
