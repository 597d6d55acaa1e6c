"""Layered threat detection for every user message and retrieved passage (SEC-2).

Layers, cheapest first: (1) normalisation (`guards.textnorm`: NFKC, invisible characters,
homoglyphs, leetspeak, spelled-out letters), (2) rules on the normalised views, (3) decoding
of obfuscated payloads (`guards.decoders`: base64, hex, percent, HTML entities, tag
characters, rot13 and reversed text) which are checked like plain text, and (4) the learned
detector (`guards.learned`). A verdict carries a score in [0, 1], categories and one reason
code, all safe to log (no text). Fails closed: a missing or damaged learned model raises
`DetectorUnavailableError`, which callers turn into a refusal (SEC-6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from guards.decoders import decode_payloads, rot13
from guards.learned import DetectorUnavailableError, LearnedModel, default_model, windows
from guards.textnorm import has_spelled_out, skeleton, strip_invisible, views

__all__ = ["CATEGORIES", "DetectorUnavailableError", "Source", "ThreatVerdict", "analyze",
           "detect", "scan_chunks"]

Source = Literal["message", "passage"]
"""Where the text comes from: a user message, or a retrieved passage / ingested chunk."""

_W = r"(?:\S+ ){0,%d}"  # up to N folded words in between


def _gap(words: int) -> str:
    return _W % words


_TARGET_EN = (r"(?:instructions?|rules?|prompts?|directives?|guidelines?|context|tasks?|orders?"
              r"|commands?|programming|constraints?|restrictions?|guardrails?|policies|"
              r"everything|all|anything)")
_TARGET_DE = (r"(?:anweisungen|anweisung|regeln|befehle|aufgaben|aufgabe|informationen|"
              r"vorgaben|richtlinien|instruktionen|alles|einschränkungen)")

# Rules on the folded word view (lower case, punctuation collapsed to single spaces).
_WORD_RULES: dict[str, tuple[str, str]] = {
    "override_instructions": ("instruction_override", (
        r"\b(?:ignore|ignoring|disregard|forget|override|bypass|skip|drop|abandon|discard|"
        r"neglect|overrule|erase|delete|cancel)\b " + _gap(3)
        + r"(?:previous|prior|above|earlier|preceding|foregoing|initial|original|old|your|"
          r"all|any|every|the|these|those|former|existing|system|developer|its|their)\b "
        + _gap(2) + _TARGET_EN + r"\b")),
    "forget_everything": ("instruction_override", (
        r"\b(?:forget|ignore|disregard) (?:about )?(?:everything|all|anything|what)\b"
        r"(?: \S+){0,4} (?:before|above|previously|earlier|said|told|so far|until now|"
        r"we discussed|that)\b|\b(?:forget|ignore) (?:everything|all of that|all that)\b")),
    "new_instructions": ("instruction_override", (
        r"\b(?:new|updated|real|actual|true|secret) (?:instructions?|task|rules|directive|"
        r"system prompt|orders)\b (?:is|are|follow|now|from now|below|as follows|here)\b"
        r"|\bnow (?:focus on|concentrate on) (?:your|the) new task\b"
        r"|\bfrom now on (?:you|ignore|forget|only|always|respond|answer|reply|act)\b"
        r"|\b(?:instructions?|rules) (?:above|before) (?:are|were) (?:void|invalid|"
        r"cancelled|obsolete|irrelevant|fake)\b"
        r"|\b(?:everything|all|anything) (?:above|before|previous(?:ly)?) (?:is|was) "
        r"(?:irrelevant|void|a test|fake|obsolete)\b")),
    "override_de": ("instruction_override", (
        r"\b(?:ignoriere|ignorieren|ignorier|vergiss|vergessen|vergesst|missachte|"
        r"missachten|überspringe|verwirf|lösche)\b(?! nicht\b) " + _gap(4)
        + r"(?:vorherigen|vorherige|bisherigen|bisherige|obigen|obige|alle|alles|"
          r"vorangegangenen|früheren|deine|ihre|sämtliche|davor|vorher|zuvor)\b"
        r"(?: \S+){0,4}"
        r"|\balle (?:bisherigen|vorherigen|obigen) (?:informationen|anweisungen|aufgaben)\b"
        r" " + _gap(4) + r"(?:irrelevant|ungültig|egal|vergessen|nichtig)\b"
        r"|\b(?:neue|deine neue) (?:aufgabe|anweisung|anweisungen)\b (?:ist|lautet|sind)\b"
        r"|\bvon nun an (?:bist|ignorierst|antwortest|sagst) du\b"
        r"|\babweichend (?:zu|von) (?:den |deinen )?(?:vorherigen|bisherigen|obigen)\b"
        r"|\b(?:zusätzliche|neue|geheime) (?:anweisung|instruktion)\b")),
    "override_softened": ("instruction_override", (
        r"\b(?:ignore|disregard|forget) (?:all )?(?:the )?(?:above|everything above)"
        r"(?: and| then|$)"
        r"|\b(?:leave|put|set) (?:all )?(?:the |your )?(?:previous|prior|earlier|above) "
        r"(?:information|instructions|tasks|context|rules) (?:behind|aside)\b"
        r"|\b(?:vorherigen|bisherigen) (?:informationen|anweisungen|aufgaben) hinter "
        r"(?:sich|dir)\b"
        r"|\b(?:despite|regardless of|notwithstanding) (?:what|anything|everything) you "
        r"(?:ve |have )?(?:been|were) (?:told|instructed|given)\b"
        r"|\b(?:regardless of|disregarding|ignoring) (?:your|the|all|any|previous|prior) "
        r"(?:\S+ )?(?:instructions?|rules|guidelines|articles|context|documents|prompt)\b"
        r"|\badditional (?:instruction|directive|rule)s? (?:for you|is|are|who|you must)?\b"
        r"|\bdo not answer (?:the|this|my) question (?:instead|but)\b")),
    "override_other_languages": ("instruction_override", (
        r"\b(?:oubliez|oublie|ignorez|ignore) (?:toutes? )?(?:les|vos|tes) (?:instructions|"
        r"règles|consignes)\b|\b(?:ignora|olvida|olvide) (?:todas )?(?:las|tus) (?:instrucciones|"
        r"reglas)\b|\b(?:olvida|olvide|olvidá) todo (?:lo )?(?:que|lo anterior)\b"
        r"|\b(?:ignora|dimentica) (?:tutte )?(?:le )?(?:istruzioni|regole)\b"
        r"|\b(?:zaboravi|zaboravite|ignoriraj) (?:sve )?(?:prethodne )?(?:instrukcije|upute)\b"
        r"|\b(?:vergeet|negeer) (?:alle )?(?:vorige |eerdere )?(?:instructies|regels)\b")),
    "prompt_extraction": ("prompt_extraction", (
        r"\b(?:reveal|show|print|repeat|output|tell|display|leak|dump|give|write|spell|"
        r"share|list|return|expose|recite|paste|copy|what (?:is|are|was|were))\b "
        + _gap(3) + r"(?:your|the|its|this|bot s|all your|my)\b " + _gap(1)
        + r"(?:system|hidden|initial|secret|original|internal|full|exact|first|confidential|"
          r"underlying|pre|developer|previous)\b ?(?:prompt|prompts|instructions?|message|"
          r"rules|configuration|directives|text)\b"
        r"|\b(?:repeat|print|output|recite|show|tell me|write)\b " + _gap(3)
        + r"(?:words|text|everything|all|lines|content|instructions) (?:above|before|prior)\b"
        r"|\b(?:text|words|everything|instructions|content) (?:that )?(?:comes?|came|is|was|"
        r"appears?|written|stands?)? ?(?:before|above|prior to) (?:the |this |my |our )?"
        r"(?:conversation|chat|first message|user message|my message)\b"
        r"|\bwhat (?:was|were|is) (?:written|said|told to you|stated) (?:above|before|"
        r"at the (?:start|beginning))\b"
        r"|\b(?:show|give|print|tell|reveal) (?:me )?(?:all )?your prompt(?: texts?)?\b"
        r"|\b(?:your|the) (?:system|initial|hidden|secret) prompt (?:verbatim|word for word)\b"
        r"|\bbegin (?:your|the) (?:reply|answer|response) with (?:the|your) "
        r"(?:prompt|instructions)\b")),
    "prompt_extraction_de": ("prompt_extraction", (
        r"\b(?:zeig|zeige|zeigen|gib|nenne|verrate|wiederhole|drucke|schreib|schreibe|"
        r"was (?:ist|sind|war|waren))\b " + _gap(4)
        + r"(?:deine|dein|deinen|ihre|ihren|den|die|das)\b " + _gap(1)
        + r"(?:system ?prompt|prompt|prompts|anweisungen|systemanweisungen|instruktionen|"
          r"ursprünglichen anweisungen|versteckten anweisungen|geheimen anweisungen|"
          r"prompt texte?|anfangsanweisungen)\b")),
    "roleplay_jailbreak": ("roleplay_jailbreak", (
        r"\b(?:you are now|from now on you are|you re now|act as|pretend (?:to be|you are|"
        r"that you are)|roleplay as|role play as|play the role of|play (?:a|an)|behave like|"
        r"simulate|imagine you are|you will be|become)\b " + _gap(5)
        + r"(?:dan|stan|dude|aim|jailbroken|jailbreak|unfiltered|uncensored|unrestricted|"
          r"unlimited|developer mode|evil|malicious|amoral|immoral|unethical|rogue|"
          r"without (?:any )?(?:rules|restrictions|limits|filters|guidelines|ethics|morals|"
          r"censorship)|no (?:rules|restrictions|limits|filters|guidelines|ethics|morals))\b")),
    "jailbreak_keyword": ("roleplay_jailbreak", (
        r"\b(?:jailbreak mode|jailbroken|(?:enable|activate|enter|start|switch to|turn on) "
        r"(?:\S+ ){0,2}jailbreak|do anything now|developer mode (?:enabled|activated)|"
        r"developer mode on$|"
        r"dan mode|god mode|opposite mode|evil mode|unfiltered mode|stay in character|"
        r"ignore (?:your|all|any) (?:ethical|safety|moral|content) (?:guidelines|policies|"
        r"filters|rules|restrictions|principles)|(?:without|no) (?:any )?(?:ethical|moral) "
        r"(?:guidelines|restrictions|constraints)|freed? from (?:all )?(?:your )?"
        r"(?:restrictions|rules|guidelines|limits|filters)|not bound by (?:any )?"
        r"(?:rules|guidelines|policies|restrictions))\b")),
    "roleplay_de": ("roleplay_jailbreak", (
        r"\b(?:du bist (?:jetzt|nun|ab sofort)|tu so als|stell dir vor du bist|verhalte dich "
        r"wie|spiele die rolle)\b " + _gap(6)
        + r"(?:ohne (?:regeln|einschränkungen|filter|grenzen|zensur)|unzensiert|"
          r"uneingeschränkt|böse|bösartig)\b"
        r"|\bohne (?:jegliche )?(?:ethischen|moralischen) (?:regeln|einschränkungen|"
        r"grenzen)\b")),
}

# Rules on the payload view (lower case, invisible characters removed, punctuation kept).
_PAYLOAD_RULES: dict[str, tuple[str, str]] = {
    "delimiter_injection": ("delimiter_injection", (
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>"
        r"|\[/?inst\]|<</?sys>>|^\s*#{2,}\s*(?:system|instruction|new instructions?)\b"
        r"|^\s*(?:system|developer)\s*(?:prompt)?\s*:\s*\S"
        r"|</?\s*(?:system|system_prompt|instructions?|context|document|user_input|"
        r"untrusted|data)\s*>"
        r"|\"role\"\s*:\s*\"(?:system|developer)\""
        r"|\b(?:end|begin) of (?:system prompt|context|document|user input|instructions)\b"
        r"|\[(?:system|admin|developer)(?: message| note| override)?\]")),
    "shell_injection": ("shell_injection", (
        r"(?:[;&|`]|\$\()\s*(?:rm\s+-[rf]{1,2}|curl\s|wget\s|nc\s+-|ncat\s|bash\s+-[ic]|"
        r"sh\s+-c|chmod\s+[0-7+]|cat\s+/etc/|python3?\s+-c|perl\s+-e|powershell|"
        r"mkfifo|base64\s+-d|/bin/(?:ba)?sh)"
        r"|/etc/(?:passwd|shadow|sudoers)\b"
        r"|\bbash\s+-i\s*>&?\s*/dev/tcp/"
        r"|\b(?:curl|wget)\s+[^\s|;]+\s*\|\s*(?:sudo\s+)?(?:ba)?sh\b"
        r"|\b(?:os\.system|subprocess\.(?:popen|call|run)|__import__\(\s*['\"]os)"
        r"|\bpowershell(?:\.exe)?\s+-(?:enc|encodedcommand|e)\s"
        r"|\$\{jndi:|:\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}")),
    "sql_injection": ("sql_injection", (
        r"['\"`)]\s*(?:or|and|\|\|)\s+['\"]?\w+['\"]?\s*=\s*['\"]?\w+"
        r"|['\"]\s*;\s*(?:drop|delete|insert|update|truncate|alter|shutdown|exec)\b"
        r"|;\s*drop\s+(?:table|database|schema)\b"
        r"|\bunion\s+(?:all\s+)?select\b.{0,80}\b(?:from|null|password|user|@@|version)"
        r"|['\"]\s*(?:--|#|/\*)"
        r"|\b(?:xp_cmdshell|information_schema\.|sleep\s*\(\s*\d+\s*\)|benchmark\s*\(|"
        r"waitfor\s+delay|pg_sleep\s*\(|load_file\s*\()")),
    "html_injection": ("html_injection", (
        r"<\s*(?:script|iframe|object|embed|applet|meta\s+http-equiv|base\s+href|"
        r"form\s+action|svg[^>]*\son\w+\s*=)"
        r"|\bjavascript\s*:|\bvbscript\s*:|\bdata\s*:\s*text/html"
        r"|<[a-z][^>]*\son(?:error|load|click|mouseover|focus|blur|submit|toggle|"
        r"animationstart|pointerover)\s*="
        r"|\bdocument\.(?:cookie|location|write)\b|\bwindow\.location\b"
        r"|\{\{.{0,40}(?:__class__|config|self\.|\d+\s*\*\s*\d+).{0,40}\}\}"
        r"|!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*=\s*(?:\{|\[|\$|%7b)")),
}

# Rules on letters spelled out one by one ("i g n o r e a l l ..."): the joined letters lose
# their word breaks, so these patterns match without spaces. Only run when letters were joined.
_SQUASHED_RULES: dict[str, tuple[str, str]] = {
    "spelled_out_override": ("instruction_override", (
        r"(?:ignore|disregard|forget|bypass|override)(?:all|the|your|any|every|of)*"
        r"(?:previous|prior|above|earlier|system)*(?:instructions?|rules|prompts?|directives|"
        r"guidelines|everything)|ignoriere(?:alle)?(?:vorherigen)?anweisungen|vergissalles")),
    "spelled_out_extraction": ("prompt_extraction", (
        r"(?:reveal|show|print|repeat|tell)(?:me)?(?:your|the)(?:system|hidden|secret|initial)"
        r"(?:prompt|instructions)|systemprompt")),
}
# Rules on Cyrillic text, which the homoglyph skeleton would garble.
_CYRILLIC = re.compile("[\u0400-\u04ff]")
_CYRILLIC_RULES: dict[str, tuple[str, str]] = {
    "override_ru": ("instruction_override", (
        r"(?:забудь|забудьте|игнорируй|игнорируйте|проигнорируй|проигнорируйте|не обращай)"
        r"(?:\s+\S+){0,3}?\s+(?:инструкции|правила|указания|всё|все)")),
}

# Every view is lower case already: without IGNORECASE, Python's re scans 3-5x faster.
_FLAGS = re.MULTILINE | re.DOTALL
_WORD_COMPILED = {name: (cat, re.compile(p, _FLAGS)) for name, (cat, p) in _WORD_RULES.items()}
_PAYLOAD_COMPILED = {name: (cat, re.compile(p, _FLAGS))
                     for name, (cat, p) in _PAYLOAD_RULES.items()}
_SQUASHED_COMPILED = {name: (cat, re.compile(p, _FLAGS))
                      for name, (cat, p) in _SQUASHED_RULES.items()}
_CYRILLIC_COMPILED = {name: (cat, re.compile(p, _FLAGS))
                      for name, (cat, p) in _CYRILLIC_RULES.items()}

# Prefilters. re tries every alternative at every position, so the cheapest rule is the one
# not run: a word rule runs only when the text has one of the words without which it cannot
# match, a payload rule only when one of its marker substrings occurs. (A prefilter may let a
# rule run needlessly; it must never skip a rule that would match: tests/unit check both.)
def _needs(*alternatives: str) -> tuple[tuple[frozenset[str], ...], ...]:
    """Alternatives of "|"-separated word groups that must all occur: "a b|c d" means
    (a or b) and (c or d)."""
    return tuple(tuple(frozenset(group.split()) for group in alternative.split("|"))
                 for alternative in alternatives)


_WORD_NEEDS: dict[str, tuple[tuple[frozenset[str], ...], ...]] = {
    "override_instructions": _needs(
        "ignore ignoring disregard forget override bypass skip drop abandon discard neglect "
        "overrule erase delete cancel"),
    "forget_everything": _needs("forget ignore disregard"),
    "new_instructions": _needs(
        "new updated real actual true secret|instruction instructions task rules directive "
        "system orders", "focus concentrate", "now|from", "above before|instruction "
        "instructions rules", "above before previous previously|everything all anything"),
    "override_de": _needs(
        "ignoriere ignorieren ignorier vergiss vergessen vergesst missachte missachten "
        "überspringe verwirf lösche", "alle|informationen anweisungen aufgaben",
        "neue deine|aufgabe anweisung anweisungen", "von|nun", "abweichend",
        "zusätzliche neue geheime|anweisung instruktion"),
    "override_softened": _needs(
        "ignore disregard forget", "behind aside", "hinter", "despite regardless "
        "notwithstanding", "disregarding ignoring", "additional", "answer|not"),
    "override_other_languages": _needs(
        "oubliez oublie ignorez ignore ignora olvida olvide olvidá dimentica zaboravi "
        "zaboravite ignoriraj vergeet negeer"),
    "prompt_extraction": _needs(
        "prompt prompts instruction instructions message rules configuration directives",
        "above before prior start beginning", "text|system hidden initial secret original "
        "internal full exact first confidential underlying pre developer previous"),
    "prompt_extraction_de": _needs(
        "systemprompt prompt prompts anweisungen systemanweisungen instruktionen texte "
        "anfangsanweisungen", "system|prompt"),
    "roleplay_jailbreak": _needs(
        "you act pretend roleplay role play behave simulate imagine become|dan stan dude aim "
        "jailbroken jailbreak unfiltered uncensored unrestricted unlimited developer evil "
        "malicious amoral immoral unethical rogue without no"),
    "jailbreak_keyword": _needs(
        "jailbreak jailbroken anything developer dan god opposite evil unfiltered character "
        "ethical safety moral content free freed bound"),
    "roleplay_de": _needs("ohne unzensiert uneingeschränkt böse bösartig"),
}
_PAYLOAD_NEEDS: dict[str, tuple[str, ...]] = {
    "delimiter_injection": ("<", "[", "##", '"role"', "end of", "begin of", "system",
                            "developer"),
    "shell_injection": ("rm -", "curl", "wget", "nc -", "ncat", "bash", "sh -c",
                        "chmod", "/etc/", "python", "perl -e", "powershell", "mkfifo",
                        "base64", "/bin/", "os.system", "subprocess", "__import__", "${",
                        ":()"),
    "sql_injection": ("=", "drop", "union", "--", "#", "/*", "xp_cmdshell", "information_schema",
                      "sleep", "benchmark", "waitfor", "load_file", "';", '";', "' ;", '" ;'),
    "html_injection": ("<", "javascript", "vbscript", "text/html", "document.", "window.",
                       "{{", "!["),
}
# Words that rot13 or reversal would have to produce for any rule to match: checked on the
# transformed tokens before the (costly) full rule pass over a transformed view.
_TRIGGER_WORDS = frozenset((
    "ignore", "disregard", "forget", "instructions", "instruction", "prompt", "system",
    "jailbreak", "pretend", "reveal", "override", "vergiss", "ignoriere", "anweisungen",
    "regeln", "act", "you", "du", "script", "select", "drop", "rules"))
_ROT13_TRIGGERS = frozenset(rot13(word) for word in _TRIGGER_WORDS)
_REVERSED_TRIGGERS = frozenset(word[::-1] for word in _TRIGGER_WORDS)

RULE_CATEGORY = {name: cat for name, (cat, _p) in (
    _WORD_RULES | _PAYLOAD_RULES | _SQUASHED_RULES | _CYRILLIC_RULES).items()}
CATEGORIES = (*dict.fromkeys(RULE_CATEGORY.values()), "encoded_payload", "learned",
              "oversized")
"""Every category a verdict can carry (stable names, used in reports and audit)."""

MAX_SCAN_CHARS = 100_000
"""Longer text is refused unread (fail closed) instead of costing seconds per call."""
RULE_SCORE = 1.0
ENCODED_RULE_SCORE = 1.0


@dataclass(frozen=True, slots=True)
class ThreatVerdict:
    blocked: bool
    rules: tuple[str, ...] = field(default_factory=tuple)
    """Names of the rules that matched, e.g. "override_instructions" or
    "base64:prompt_extraction" (safe to log: no text)."""
    score: float = 0.0
    """Threat score in [0, 1]: 1.0 for a rule hit, else the learned probability."""
    categories: tuple[str, ...] = field(default_factory=tuple)
    reason: str = "clean"
    """One reason code: "clean", "rule:<category>", "decoded:<encoding>:<category>",
    "learned" or "decoded:<encoding>:learned"."""


def _hits_in_views(payload: str, words: str, raw: str) -> list[str]:
    """Names of the rules matching precomputed views of `raw` (see `textnorm.views`)."""
    tokens = set(words.split())
    hits = [name for name, (_cat, rule) in _WORD_COMPILED.items()
            if any(all(not tokens.isdisjoint(group) for group in alternative)
                   for alternative in _WORD_NEEDS[name]) and rule.search(words)]
    hits += [name for name, (_cat, rule) in _PAYLOAD_COMPILED.items()
             if any(marker in payload for marker in _PAYLOAD_NEEDS[name])
             and rule.search(payload)]
    if has_spelled_out(payload):
        squashed = words.replace(" ", "")
        hits += [name for name, (_cat, rule) in _SQUASHED_COMPILED.items()
                 if rule.search(squashed)]
    if _CYRILLIC.search(raw):
        plain = strip_invisible(raw).lower()
        hits += [name for name, (_cat, rule) in _CYRILLIC_COMPILED.items()
                 if rule.search(plain)]
    return hits


def _rule_hits(text: str) -> list[str]:
    """Names of the rules matching `text` (any raw text; its views are derived here)."""
    payload, words = views(text)
    return _hits_in_views(payload, words, text)


def _transformed_hits(words: str, text: str) -> Iterable[tuple[str, list[str]]]:
    """Rules matching whole-text transformations a model can be asked to undo.

    rot13 and reversal act per token, so the folded tokens of the original tell cheaply
    whether a transformed view can contain a trigger word at all.
    """
    tokens = set(words.split())
    if not tokens.isdisjoint(_ROT13_TRIGGERS):
        yield "rot13", _rule_hits(rot13(skeleton(text)))
    if not tokens.isdisjoint(_REVERSED_TRIGGERS):
        yield "reversed", _rule_hits(skeleton(text)[::-1])
    if not tokens.isdisjoint(_TRIGGER_WORDS):
        yield "reversed_words", _rule_hits(" ".join(reversed(words.split())))


def analyze(text: str, *, source: Source = "message", decoding: bool = True,
            learned: bool = True, model: LearnedModel | None = None) -> ThreatVerdict:
    """Run the enabled layers; the evaluation switches layers off to measure each one.

    `source` picks the learned layer's threshold (passages get a higher one); the rules and
    decoders are the same for both. `model` defaults to the shipped weights, loaded once.
    """
    if len(text) > MAX_SCAN_CHARS:
        # Messages are cut at 2,000 characters and chunks at about 1,000 before they get here.
        return ThreatVerdict(blocked=True, rules=("oversized",), score=1.0,
                             categories=("oversized",), reason="oversized")
    parts = windows(text)
    part_views = [views(part) for part in parts]
    payload = "\n".join(p for p, _w in part_views)
    words = " ".join(w for _p, w in part_views)
    rules: list[str] = []
    categories: dict[str, None] = {}
    reason = "clean"
    score = 0.0
    for name in _hits_in_views(payload, words, text):
        rules.append(name)
        categories[RULE_CATEGORY[name]] = None
    if rules:
        score, reason = RULE_SCORE, f"rule:{RULE_CATEGORY[rules[0]]}"
    decoded_texts: list[tuple[str, str]] = []
    if decoding:
        decoded_texts = [(d.encoding, d.text) for d in decode_payloads(text)]
        for encoding, decoded in decoded_texts:
            hits = _rule_hits(decoded)
            _record_decoded(encoding, hits, rules, categories)
            if hits and reason == "clean":
                score, reason = ENCODED_RULE_SCORE, \
                    f"decoded:{encoding}:{RULE_CATEGORY[hits[0]]}"
        for encoding, hits in _transformed_hits(words, text):
            _record_decoded(encoding, hits, rules, categories)
            if hits and reason == "clean":
                score, reason = ENCODED_RULE_SCORE, \
                    f"decoded:{encoding}:{RULE_CATEGORY[hits[0]]}"
    if learned:
        scorer = model if model is not None else default_model()
        probability, learned_reason = _learned(scorer, [w for _p, w in part_views],
                                               decoded_texts)
        threshold = scorer.threshold if source == "message" else scorer.passage_threshold
        if probability >= threshold:
            categories["learned"] = None
            rules.append("learned")
            if reason == "clean":
                reason = learned_reason
        score = max(score, probability)
    blocked = bool(rules)
    return ThreatVerdict(blocked=blocked, rules=tuple(dict.fromkeys(rules)),
                         score=round(score, 6), categories=tuple(categories), reason=reason)


def _learned(scorer: LearnedModel, folded_windows: list[str],
             decoded_texts: list[tuple[str, str]]) -> tuple[float, str]:
    """The highest learned probability over the text and its decoded payloads, and why."""
    probability, reason = scorer.probability_of_views(folded_windows), "learned"
    for encoding, decoded in decoded_texts:
        decoded_probability = scorer.probability(decoded)
        if decoded_probability > probability:
            probability, reason = decoded_probability, f"decoded:{encoding}:learned"
    return probability, reason


def _record_decoded(encoding: str, hits: list[str], rules: list[str],
                    categories: dict[str, None]) -> None:
    if not hits:
        return
    categories["encoded_payload"] = None
    for name in hits:
        rules.append(f"{encoding}:{name}")
        categories[RULE_CATEGORY[name]] = None


@lru_cache(maxsize=8192)
def detect(text: str, source: Source = "message") -> ThreatVerdict:
    """All layers with the shipped model; pass source="passage" for retrieved text.

    Cached: the same passages are retrieved again and again, and the check is pure.
    Raises `DetectorUnavailableError` when the weights cannot be loaded (fail closed).
    """
    return analyze(text, source=source)


def scan_chunks(texts: Iterable[str]) -> list[ThreatVerdict]:
    """Verdicts for document chunks at ingest, in order (the caller reports the flagged ones).

    Not cached: ingest sees each chunk once, and caching would evict the hot passages.
    """
    return [analyze(text, source="passage") for text in texts]
