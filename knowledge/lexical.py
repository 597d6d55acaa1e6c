"""One English tokenizer (Snowball stemmer + stop words) shared by BM25 and sentence scoring.

Ingest and query must tokenize identically or BM25 silently stops matching; keeping the
tokenizer in one place makes that impossible to get wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

# Words of two or more characters, and single digits ("exit code 3" must match "3").
TOKEN_PATTERN = r"(?u)\b(?:\w\w+|\d)\b"  # noqa: S105 - a regex, not a secret
_WORD = re.compile(TOKEN_PATTERN)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


# Question words carry no topic: without them "What does exit code 3 mean?" would count
# "what", "does" and "mean" as evidence.
_QUESTION_WORDS = """what when where which who whom whose why how does do did doing done can
could would should shall may might must me my mine i im ive you your please tell explain mean
means about there here"""
QUESTION_WORDS = frozenset(_QUESTION_WORDS.split())


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | QUESTION_WORDS


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text`."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    return list(_stemmer().stemWords(words))


def bm25_tokenize(texts: Sequence[str]) -> Any:
    """bm25s tokens for indexing, with the same stemmer and stop words as `terms`."""
    import bm25s

    return bm25s.tokenize(list(texts), lower=True, token_pattern=TOKEN_PATTERN,
                          stopwords=list(_stopwords()),
                          stemmer=_stemmer(), show_progress=False)
