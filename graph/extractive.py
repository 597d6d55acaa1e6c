"""The offline answerer: quotes the passage sentences that best match the question.

Used when no chat model is configured (GR-2) and by the fallback when the model is
unavailable. It never writes anything the documents do not say, and cites every line.
"""

from __future__ import annotations

import re
from functools import lru_cache

from graph.citations import citation_number, number_sources, renumber
from graph.state import Citation, Passage
from knowledge.lexical import terms

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9`*/])")
_BLOCK_START = re.compile(r"^\s*(#{1,6}\s|[-*+]\s|\d+[.)]\s|>|\|)")
_MARKUP = re.compile(r"^\s*(#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)")
_INLINE = re.compile(r"(\*\*|__|`)")
_FRAGMENT_END = re.compile(r"(:|,|;|\b(or|and|but|with|the|a|to))$", re.IGNORECASE)
_LIST_TAIL = re.compile(r"(\s*[,;]|\s+(or|and))+$", re.IGNORECASE)
MAX_SENTENCE_CHARS = 400
MIN_SENTENCE_CHARS = 20


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items with hard-wrapped lines joined back together."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _BLOCK_START.match(line):
            if current:
                blocks.append(" ".join(current))
            current = [line.strip()] if line.strip() else []
        else:
            current.append(line.strip())
    if current:
        blocks.append(" ".join(current))
    return blocks


def _is_statement(sentence: str) -> bool:
    """A sentence worth quoting: 20 characters or more, or a shorter complete one of at
    least two words ("Widgets are blue."); never a fragment ending in "and", ":" …"""
    if _FRAGMENT_END.search(sentence):
        return False
    return len(sentence) >= MIN_SENTENCE_CHARS or (
        sentence.endswith((".", "!", "?")) and len(sentence.split()) >= 2)


def _sentences(text: str) -> list[str]:
    found = []
    for block in _blocks(text):
        if block.lstrip().startswith("#"):
            continue  # headings are labels, not answers
        list_item = bool(_MARKUP.match(block))
        cleaned = _INLINE.sub("", _MARKUP.sub("", block)).strip()
        for piece in _SENTENCE_END.split(cleaned):
            sentence = piece.strip()
            if list_item:  # "- the user: an HMAC of the id, and" is a complete statement
                sentence = _LIST_TAIL.sub("", sentence)
            if _is_statement(sentence):
                found.append(sentence[:MAX_SENTENCE_CHARS])
    return found


@lru_cache(maxsize=4096)
def _scored_sentences(text: str) -> tuple[tuple[str, frozenset[str], int], ...]:
    """Each sentence with its stemmed terms and length; cached per passage text."""
    result = []
    for sentence in _sentences(text):
        words = terms(sentence)
        result.append((sentence, frozenset(words), len(words)))
    return tuple(result)


def extractive_answer(question: str, passages: list[Passage], *, max_sentences: int = 3
                      ) -> tuple[str, list[Citation]]:
    """Pick up to `max_sentences` sentences by stemmed-term overlap with the question.
    ("", []) when the passages hold no sentence at all: callers then say they don't know."""
    wanted = set(terms(question))
    citations = number_sources(passages)
    scored: list[tuple[float, int, str, int]] = []
    for rank, passage in enumerate(passages):
        for position, (sentence, words, length) in enumerate(_scored_sentences(passage["text"])):
            overlap = len(wanted & words)
            # Favour overlap, then better-ranked passages, then earlier sentences.
            score = overlap / (1 + 0.02 * length) - 0.15 * rank - 0.01 * position
            scored.append((score, rank, sentence, citation_number(citations, passage)))
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen: list[tuple[str, int]] = []
    for score, _, sentence, number in scored:
        if len(chosen) == max_sentences:
            break
        if chosen and score <= 0:
            break
        if all(sentence != existing for existing, _ in chosen):
            chosen.append((sentence, number))
    body = "\n".join(f"• {sentence} [{number}]" for sentence, number in chosen)
    return renumber(body, citations)
