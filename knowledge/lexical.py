"""One English tokenizer (Snowball stemmer + stop words) shared by BM25 and sentence scoring.

Ingest and query must tokenize identically or BM25 silently stops matching; keeping the
tokenizer in one place makes that impossible to get wrong.
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

# Words of two or more characters, and single digits ("exit code 3" must match "3").
TOKEN_PATTERN = r"(?u)\b(?:\w\w+|\d)\b"  # noqa: S105 - a regex, not a secret
_WORD = re.compile(TOKEN_PATTERN)


def import_bm25s() -> ModuleType:
    """bm25s, imported without scipy: the only way this package imports it.

    bm25s imports `scipy.sparse` whenever scipy is installed (the eval and export extras
    bring it), but uses it only to build its matrix with the "scipy" backend; the "numpy"
    backend, which `write_index` asks for, builds the same scores. scipy would add about
    14 MB and 0.1-0.25 s to `serve`, which keeps the training stack out
    (tests/unit/project/test_runtime_imports.py). A `None` entry in `sys.modules` makes
    that one import fail for the moment bm25s is imported; the previous entry is restored,
    so other code still imports scipy as usual. One thread at a time: a second one could
    otherwise see a half-imported bm25s, or restore the `None` entry for good."""
    with _BM25S_IMPORT:
        loaded = sys.modules.get("bm25s")
        if loaded is not None:
            return loaded
        modules: dict[str, ModuleType | None] = sys.modules  # type: ignore[assignment]
        name = "scipy.sparse"
        had = name in modules
        previous = modules.get(name)
        modules[name] = None  # the documented way to make an import raise ImportError
        try:
            bm25s = importlib.import_module("bm25s")
        finally:
            if had:
                modules[name] = previous
            else:
                del modules[name]
        return bm25s


_BM25S_IMPORT = threading.Lock()


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
    stopwords: frozenset[str] = frozenset(import_bm25s().stopwords.STOPWORDS_EN)
    return stopwords | QUESTION_WORDS


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text`."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    return list(_stemmer().stemWords(words))


def bm25_tokenize(texts: Sequence[str]) -> Any:
    """bm25s tokens for indexing, with the same stemmer and stop words as `terms`."""
    bm25s = import_bm25s()
    return bm25s.tokenize(list(texts), lower=True, token_pattern=TOKEN_PATTERN,
                          stopwords=list(_stopwords()),
                          stemmer=_stemmer(), show_progress=False)
