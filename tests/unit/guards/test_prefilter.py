"""The rule prefilters are an optimisation only: they must never skip a rule that matches."""

from __future__ import annotations

import json
from pathlib import Path

from guards.decoders import rot13
from guards.textnorm import skeleton, views
from guards.threats import _PAYLOAD_COMPILED, _WORD_COMPILED, _hits_in_views

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "guards" / "data" / "corpus.jsonl"
SETS = [ROOT / "evals" / "datasets" / "security" / "attacks.jsonl",
        ROOT / "evals" / "datasets" / "security" / "benign.jsonl"]


def _lines(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").split("\n")
            if line.strip()]


def _texts() -> list[str]:
    # Every third corpus row (all sources, about 3,100 texts) keeps the test quick.
    texts = _lines(CORPUS)[::3] + [t for path in SETS for t in _lines(path)]
    # The transformed views are checked with the same prefilters.
    return texts + [rot13(skeleton(t)) for t in texts[:300]] + [t[::-1] for t in texts[:300]]


def test_prefiltered_rules_equal_the_unfiltered_rules():
    texts = _texts()
    assert len(texts) > 1000
    matched = 0
    for text in texts:
        payload, words = views(text)
        expected = {name for name, (_c, rule) in _WORD_COMPILED.items() if rule.search(words)}
        expected |= {name for name, (_c, rule) in _PAYLOAD_COMPILED.items()
                     if rule.search(payload)}
        got = set(_hits_in_views(payload, words, text)) & (set(_WORD_COMPILED)
                                                           | set(_PAYLOAD_COMPILED))
        assert got == expected, text[:80]
        matched += bool(expected)
    assert matched > 300  # the corpus exercises the rules, not only their absence
