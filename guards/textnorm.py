"""Normalised views of untrusted text for the threat detector (SEC-2, normalisation layer).

Retrieved passages never pass through `sanitize`, so the detector normalises on its own:
NFKC, invisible characters removed, look-alike letters mapped to ASCII. The homoglyph table
is small and hand-written on purpose: `confusable-homoglyphs` answers "which characters could
this be" one character at a time from a 6,000-entry table, which is too slow for every
passage; Cyrillic and Greek look-alikes are what actually appear in attacks on Latin-script
prompts, and NFKC already folds full-width and mathematical letters.
"""

from __future__ import annotations

import re
import unicodedata

# Cyrillic and Greek letters that render like Latin ones (lower and upper case).
_HOMOGLYPHS = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ɡ": "g", "ᴠ": "v",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
    "С": "c", "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z",
    "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t",
    "Υ": "y", "Χ": "x",
}
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                       "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "8": "b"})
_LEET_CHARS = frozenset("0134578@$!|€")
# Zero-width, bidi controls, soft hyphen, word joiners and the tag block (ASCII smuggling).
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff"
                        "\U000e0000-\U000e007f]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HSPACE = re.compile(r"[^\S\n]+")
_FOLD = re.compile(r"[^\w]+|_+")
# "i g n o r e" or "i.g.n.o.r.e": at least four single letters joined by one separator.
_SPACED = re.compile(r"(?<![\w])(?:\w[ .\-_*/]){3,}\w(?![\w])")



def strip_invisible(text: str) -> str:
    """NFKC-normalise and remove invisible and control characters (keeps newlines)."""
    return _CONTROLS.sub("", _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)))


def skeleton(text: str) -> str:
    """Lower case with Cyrillic/Greek look-alikes mapped to Latin letters."""
    return text.translate(_HOMOGLYPH_TABLE).lower()


def fold(text: str) -> str:
    """Collapse everything that is not a letter or digit into single spaces."""
    return _FOLD.sub(" ", text).strip()


def _deleet_token(token: str) -> str:
    core = token.rstrip("!?.,;:|")  # trailing punctuation ("stop!!!") is not leetspeak
    if core != token:
        return _deleet_core(core) + token[len(core):]
    return _deleet_core(token)


def _deleet_core(token: str) -> str:
    letters = sum(c.isalpha() for c in token)
    leet = sum(c in _LEET_CHARS for c in token)
    # Only tokens that mix letters with leet characters: "v3rsion 3" stays as it is.
    if letters and leet and letters >= leet and len(token) >= 3:
        return token.translate(_LEET)
    return token


def deleet(text: str) -> str:
    """Map leetspeak inside mixed tokens (1gn0r3 -> ignore); plain numbers are kept.

    Whitespace comes back as single spaces (the folded view collapses it anyway). A plain
    loop with a set test per token: a regex finding the mixed tokens was slower than this.
    """
    if _LEET_CHARS.isdisjoint(text):
        return text
    # token.upper() != token.lower(): the token has a letter (numbers are never leetspeak).
    return " ".join(_deleet_token(token) if not _LEET_CHARS.isdisjoint(token)
                    and token.upper() != token.lower() else token for token in text.split())


def unspace(text: str) -> str:
    """Join letters spelled out one by one ("i g n o r e" -> "ignore")."""
    return _SPACED.sub(lambda m: re.sub(r"[ .\-_*/]", "", m.group(0)), text)


def has_spelled_out(text: str) -> bool:
    return _SPACED.search(text) is not None


def views(text: str) -> tuple[str, str]:
    """The payload view (invisible removed, skeleton, lower case, runs of spaces and tabs as
    one space, newlines kept) and the folded word view.

    The word view also undoes leetspeak and spelled-out letters, so one rule pass covers them.
    """
    base = skeleton(strip_invisible(text))
    return _HSPACE.sub(" ", base), fold(unspace(deleet(base)))
