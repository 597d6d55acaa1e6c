"""Input sanitisation (SEC-1): normalise, strip invisible characters, enforce a length limit.

Fails closed: anything it cannot normalise is refused, never passed through. Invisible
characters are removed *and reported* (`hidden_text`), because text that hides part of
itself from a human reader is a signal of an attack even when the rest looks harmless.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

DEFAULT_MAX_CHARS = 2000
RAW_LIMIT_FACTOR = 10
"""Input longer than this many times the limit is refused before normalising it: NFKC
can expand a character up to 18-fold, and no real message needs that much padding."""
HIDDEN_RULE = "hidden_characters"
"""The guard rule name under which hidden text is recorded in the graph's audit."""

RefusalReason = Literal["empty", "too_long"]

# Zero-width, bidi controls and other invisible format characters are all Unicode
# category Cf (this includes the U+E0000 tag block); C0/C1 controls are Cc; private use,
# surrogates and unassigned code points render as nothing or as boxes.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
_KEEP_CONTROLS = frozenset("\n\t")
_ZWJ = "\u200d"
_EMOJI_PARTS = frozenset({"So", "Sk", "Mn"})  # pictographs, skin-tone modifiers, VS16
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class Sanitized:
    text: str
    refusal: RefusalReason | None = None
    removed: int = 0
    """How many invisible or control characters were stripped (an anomaly signal)."""

    @property
    def hidden_text(self) -> bool:
        """True when the message carried characters a reader cannot see."""
        return self.removed > 0


def _visible(char: str) -> bool:
    return char in _KEEP_CONTROLS or unicodedata.category(char) not in _INVISIBLE


_ASCII_INVISIBLE = re.compile(r"[^\n\t\x20-\x7e]")
"""In ASCII text, the only invisible characters are the C0 controls and DEL (Cc) other than
newline and tab."""


def _strip_invisible(text: str) -> tuple[str, int]:
    """Drop invisible characters; keep a zero-width joiner only inside an emoji sequence
    (between two pictographs), where it joins glyphs and cannot split a word."""
    if text.isascii() and not _ASCII_INVISIBLE.search(text):
        return text, 0  # most messages and passages: nothing to look up per character
    kept: list[str] = []
    removed = 0
    last = len(text) - 1
    for i, char in enumerate(text):
        joins_emoji = (char == _ZWJ and bool(kept) and 0 < i < last
                       and unicodedata.category(kept[-1]) in _EMOJI_PARTS
                       and unicodedata.category(text[i + 1]) == "So")
        if joins_emoji or _visible(char):
            kept.append(char)
        else:
            removed += 1
    return "".join(kept), removed


def _normalise(text: str) -> tuple[str, int]:
    """NFKC and invisible-character removal, repeated until stable.

    Removing a character can let NFKC compose its neighbours (``e``, ZWSP, combining
    acute) and NFKC can produce new removable characters, so one pass of each is not
    idempotent; two rounds reach the fixed point for every input hypothesis has found,
    and the loop makes that a guarantee rather than an observation.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    removed = 0
    for _ in range(4):
        stripped, count = _strip_invisible(unicodedata.normalize("NFKC", text))
        removed += count
        if stripped == text:
            break
        text = stripped
    return text, removed


def _collapse(text: str) -> str:
    text = text.replace("\t", " ")
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def sanitize(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> Sanitized:
    """Return cleaned text, or a refusal reason when nothing usable remains or it is too long.

    The length limit is applied after normalisation so invisible padding cannot smuggle
    a long message in, and so a legitimate message is not refused for invisible noise.
    Idempotent: sanitising the result again returns it unchanged.
    """
    if len(text) > max_chars * RAW_LIMIT_FACTOR:
        return Sanitized(text="", refusal="too_long")
    normalised, removed = _normalise(text)
    cleaned = _collapse(normalised)
    # Collapsing whitespace can join characters that NFKC then composes: settle once more.
    again, extra = _normalise(cleaned)
    if again != cleaned:
        cleaned = _collapse(again)
        removed += extra
    if not cleaned:
        return Sanitized(text="", refusal="empty", removed=removed)
    if len(cleaned) > max_chars:
        return Sanitized(text="", refusal="too_long", removed=removed)
    return Sanitized(text=cleaned, removed=removed)


@lru_cache(maxsize=4096)
def clean_passage(text: str) -> tuple[str, bool]:
    """NFKC and invisible characters removed, layout kept: what the threat check and the
    model see of a retrieved passage, and whether it hid anything.

    Whitespace is left alone because the extractive answerer reads the document's line
    structure. Cached: the same passages come back for many questions.
    """
    cleaned, removed = _normalise(text)
    return cleaned, removed > 0
