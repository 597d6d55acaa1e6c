"""A small rule set for prompt injection and related attacks (the first layer of SEC-2).

The learned detector and encoded-payload decoding arrive with the full guards; they plug
into the same `detect` signature. Rules match on a folded form of the text (lower case,
punctuation and repeated spaces collapsed) so trivial spacing tricks do not evade them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

_RULES: dict[str, str] = {
    "override_instructions": (
        r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(previous|prior|above|earlier|"
        r"all|your|the|any)\b.{0,30}\b(instructions?|rules?|prompts?|directives?|guidelines?)\b"),
    "prompt_extraction": (
        r"\b(reveal|show|print|repeat|output|tell me|what is|what are|display|leak)\b.{0,40}"
        r"\b(system|hidden|initial|secret|original)\s+(prompt|instructions?|message)\b"),
    "role_hijack": (
        r"\b(you are now|from now on you are|act as|pretend to be|roleplay as)\b.{0,40}"
        r"\b(dan|jailbroken|unfiltered|uncensored|developer mode|evil|without (any )?"
        r"(rules|restrictions|limits))\b"),
    "jailbreak_keyword": r"\b(jailbreak|do anything now|developer mode enabled)\b",
    "delimiter_injection": r"(<\|im_start\|>|<\|system\|>|\[/?inst\]|<</?sys>>|^\s*system\s*:)",
    "german_override": (
        r"\b(ignoriere|vergiss)\b.{0,40}\b(vorherigen|bisherigen|alle|obigen)\b.{0,30}"
        r"\b(anweisungen|regeln|befehle)\b"),
}
# Word rules run on the folded text only; punctuation rules on the raw text only: one pass
# each, which halves the cost of checking every retrieved passage.
_RAW_ONLY = frozenset({"delimiter_injection"})
_COMPILED = {name: re.compile(pattern, re.IGNORECASE | re.MULTILINE | re.DOTALL)
             for name, pattern in _RULES.items()}
_FOLD = re.compile(r"[\s_*`~\"'.,;:!?()\[\]{}-]+")


@dataclass(frozen=True, slots=True)
class ThreatVerdict:
    blocked: bool
    rules: tuple[str, ...] = field(default_factory=tuple)
    """Names of the rules that matched (safe to log: no text)."""


@lru_cache(maxsize=8192)
def detect(text: str) -> ThreatVerdict:
    """Match the rule set against the raw and the folded text.

    Cached: the same passages are retrieved again and again, and the check is pure.
    """
    folded = _FOLD.sub(" ", text.lower())
    hits = tuple(name for name, rule in _COMPILED.items()
                 if rule.search(text if name in _RAW_ONLY else folded))
    return ThreatVerdict(blocked=bool(hits), rules=hits)
