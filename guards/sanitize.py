"""Input sanitisation (SEC-1): normalise, strip invisible characters, enforce a length limit.

Fails closed: anything it cannot normalise is refused, never passed through.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_CHARS = 2000

RefusalReason = Literal["empty", "too_long"]

# Zero-width, bidi controls and other invisible format characters are all Unicode
# category Cf (this includes the U+E0000 tag block); C0/C1 controls are Cc.
_KEEP_CONTROLS = frozenset("\n\t")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class Sanitized:
    text: str
    refusal: RefusalReason | None = None
    removed: int = 0
    """How many invisible or control characters were stripped (an anomaly signal)."""


def _visible(char: str) -> bool:
    if char in _KEEP_CONTROLS:
        return True
    category = unicodedata.category(char)
    return category not in {"Cc", "Cf", "Co", "Cs", "Cn"}


def sanitize(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> Sanitized:
    """Return cleaned text, or a refusal reason when nothing usable remains or it is too long.

    The length limit is applied after normalisation so invisible padding cannot smuggle
    a long message in, and so a legitimate message is not refused for invisible noise.
    """
    normalised = unicodedata.normalize("NFKC", text)
    kept = [c for c in normalised if _visible(c)]
    removed = len(normalised) - len(kept)
    cleaned = "".join(kept).replace("\t", " ")
    cleaned = _SPACES.sub(" ", cleaned)
    cleaned = _BLANK_LINES.sub("\n\n", cleaned)
    cleaned = "\n".join(line.strip() for line in cleaned.split("\n")).strip()
    if not cleaned:
        return Sanitized(text="", refusal="empty", removed=removed)
    if len(cleaned) > max_chars:
        return Sanitized(text="", refusal="too_long", removed=removed)
    return Sanitized(text=cleaned, removed=removed)
