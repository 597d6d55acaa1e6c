"""Split long answers into Signal-sized parts on natural boundaries (SIG-4).

Why our own: LangChain's text splitters cut for embedding (overlap, no part markers, size in
code points), while a chat reply needs no overlap, "(1/3)" markers that count toward the
limit, and an intact "Sources:" block. Length is measured in UTF-16 code units, as
signal-cli (Java `String.length()`) measures the body; that is never less than the number of
code points, so a part that fits here fits any other count too. Pure, no I/O.
"""

from __future__ import annotations

import re
from itertools import accumulate

__all__ = ["SIGNAL_TEXT_LIMIT", "split_reply"]

SIGNAL_TEXT_LIMIT = 2000
"""Longer bodies are turned into a long-text attachment by signal-cli; we split instead."""

_MIN_LIMIT = 16

_PARAGRAPH_SEP = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_SEP = re.compile(r"(?<=[.!?…:;])\s+|\n\s*")  # starts only at a newline: linear
_WORD_SEP = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH_SEP, _SENTENCE_SEP, _WORD_SEP)
_SOURCES = re.compile(r"^[ \t*_#>]*sources?\s*[:*_]", re.IGNORECASE | re.MULTILINE)

Span = tuple[int, int]


class _Text:
    """The text plus prefix sums of UTF-16 widths, so any slice is measured in O(1)."""

    def __init__(self, text: str) -> None:
        self.text = text
        widths = (2 if ord(ch) > 0xFFFF else 1 for ch in text)
        self.units = [0, *accumulate(widths)]

    def size(self, start: int, end: int) -> int:
        return self.units[end] - self.units[start]

    def trim(self, start: int, end: int) -> Span:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return start, end


def _segments(doc: _Text, start: int, end: int, sep: re.Pattern[str]) -> list[Span]:
    """Non-empty, trimmed pieces of doc[start:end] between matches of `sep`."""
    spans: list[Span] = []
    pos = start
    for match in sep.finditer(doc.text, start, end):
        spans.append(doc.trim(pos, match.start()))
        pos = match.end()
    spans.append(doc.trim(pos, end))
    return [(s, e) for s, e in spans if s < e]


def _hard_split(doc: _Text, start: int, end: int, budget: int) -> list[Span]:
    """Cut one overlong word into budget-sized pieces, never inside a surrogate pair."""
    spans: list[Span] = []
    piece = start
    for pos in range(start, end):
        if doc.size(piece, pos + 1) > budget:
            spans.append((piece, pos))
            piece = pos
    spans.append((piece, end))
    return spans


def _pack(doc: _Text, start: int, end: int, budget: int, level: int) -> list[Span]:
    """Greedily join pieces of one level into parts of at most `budget` units; a piece that
    is too long on its own is split at the next finer level."""
    if level == len(_LEVELS):
        return _hard_split(doc, start, end, budget)
    parts: list[Span] = []
    current: Span | None = None
    for seg_start, seg_end in _segments(doc, start, end, _LEVELS[level]):
        if current is not None and doc.size(current[0], seg_end) <= budget:
            current = (current[0], seg_end)
            continue
        if current is not None:
            parts.append(current)
        if doc.size(seg_start, seg_end) <= budget:
            current = (seg_start, seg_end)
        else:
            *done, current = _pack(doc, seg_start, seg_end, budget, level + 1)
            parts.extend(done)
    if current is not None:
        parts.append(current)
    return parts


def _split(doc: _Text, start: int, end: int, budget: int) -> list[Span]:
    """Parts of doc[start:end], with the last "Sources:" block kept whole when it fits."""
    sources = None
    for match in _SOURCES.finditer(doc.text, start, end):
        sources = match.start()
    if sources is None or doc.size(*doc.trim(sources, end)) > budget:
        return _pack(doc, start, end, budget, 0)
    src = doc.trim(sources, end)
    body = doc.trim(start, sources)
    parts = _pack(doc, *body, budget, 0) if body[0] < body[1] else []
    if parts and doc.size(parts[-1][0], src[1]) <= budget:
        parts[-1] = (parts[-1][0], src[1])
    else:
        parts.append(src)
    return parts


def split_reply(text: str, limit: int = SIGNAL_TEXT_LIMIT) -> list[str]:
    """Split `text` into parts of at most `limit` UTF-16 units each, markers included.

    Paragraph boundaries first, then sentences (and single line breaks), then words; a word
    is cut only when it alone exceeds the room left. Several parts end in " (i/n)". Leading
    and trailing whitespace of each part is dropped; whitespace-only text gives [].
    """
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT}")
    doc = _Text(text)
    start, end = doc.trim(0, len(text))
    if start == end:
        return []
    if doc.size(start, end) <= limit:
        return [text[start:end]]
    digits = 1
    while True:
        # " (i/n)" with n of `digits` digits is at most 4 + 2 * digits units long.
        budget = limit - (4 + 2 * digits)
        if budget < 2:  # room for at least one astral character per part
            raise ValueError("text too long to split within this limit")
        parts = _split(doc, start, end, budget)
        if len(parts) < 10**digits:
            break
        digits += 1
    total = len(parts)
    return [f"{text[s:e]} ({i}/{total})" for i, (s, e) in enumerate(parts, start=1)]
