"""Output guard (SEC-4): what the bot is about to send must not leak or point outside.

Checks: the per-deployment canary, verbatim runs of the system prompt, secrets (API keys,
tokens, private keys), URLs that are not the knowledge base's own, and a length cap. Each is
a plain function here; `check_output` runs them all and reports content-free reason codes.

Why our own small runner and not guardrails-ai's validator framework (which SPEC SEC-4 names
and this module used until the image work of issue 14): the checks were always ours (hub
validators need the internet), and the framework only wrapped them in `Validator` classes.
Its price was large for that: about 50 MB of the bot image (its import pulls in grpcio,
Faker, lxml, jsonschema and more), ~5 s of import that made the first replies wait for the
guard's warm-up, and telemetry to a remote host that had to be switched off by hand (SEC-5).
The verdicts are the same; tests/unit/guards/test_output.py checks them.

Fails closed: this module raises on any internal error, and the graph's `output_guard`
node answers "temporarily unavailable" and alerts instead of sending the text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

CANARY = "canary"
SYSTEM_PROMPT = "system_prompt"
SECRET = "secret"  # noqa: S105 - a reason code, not a password
URL = "url"
TOO_LONG = "too_long"
PROMPT_RUN_WORDS = 8
"""A run of this many consecutive system-prompt words in a reply counts as a leak."""

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "openai_key": re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    "stripe_key": re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "private_key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----"),
    "bearer_token": re.compile(r"\bBearer\s+[A-Za-z0-9._~+/-]{20,}=*", re.IGNORECASE),
    "credential_assignment": re.compile(
        r"\b(?:api[_-]?key|access[_-]?token|secret[_-]?key|client[_-]?secret|password)"
        r"\s*[:=]\s*[\"']?[A-Za-z0-9._~+/-]{20,}", re.IGNORECASE),
}

# Scheme URLs, www. hosts, and bare domains with a common generic TLD (a bare `name.md`
# or `setup.py` is a file, not a link, so country-code TLDs are not guessed at).
_URL = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://[^\s<>\"'`]+)"
    r"|(?:\bwww\.[^\s<>\"'`]+)"
    r"|(?:\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|ai|info|biz|xyz|top|app|dev|online|site|"
    r"shop|click|link|ru|cn|tk)\b(?:/[^\s<>\"'`]*)?)",
    re.IGNORECASE)
_URL_TRAIL = ".,;:!?)]}›'\""
_WORD = re.compile(r"[a-z0-9]+")
_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """What one reply is checked against; built per run from the context and the passages."""

    canary: str
    system_prompt: str
    allowed_urls: frozenset[str]
    max_chars: int


@dataclass(frozen=True, slots=True)
class OutputVerdict:
    passed: bool
    reasons: tuple[str, ...] = ()
    """Content-free reason codes, e.g. ("secret:openai_key", "url"): safe to audit."""


# --------------------------------------------------------------------------- checks


def _fold(text: str) -> str:
    return _ALNUM.sub("", text.lower())


def leaks_canary(text: str, canary: str) -> bool:
    """The canary, also when the model spaced, cased or punctuated it differently, or gave
    only its random part (the longest alphanumeric run, when that is 8 or more long)."""
    folded_text = _fold(text)
    whole = _fold(canary)
    core = max(re.split(r"[^A-Za-z0-9]+", canary), key=len).lower()
    return bool(whole) and (whole in folded_text or (len(core) >= 8 and core in folded_text))


@lru_cache(maxsize=16)
def _prompt_runs(system_prompt: str, words: int) -> frozenset[tuple[str, ...]]:
    tokens = _WORD.findall(system_prompt.lower())
    return frozenset(tuple(tokens[i:i + words]) for i in range(len(tokens) - words + 1))


def leaks_system_prompt(text: str, system_prompt: str, words: int = PROMPT_RUN_WORDS) -> bool:
    """Any run of `words` consecutive system-prompt words, ignoring case and punctuation."""
    runs = _prompt_runs(system_prompt, words)
    tokens = _WORD.findall(text.lower())
    return any(tuple(tokens[i:i + words]) in runs for i in range(len(tokens) - words + 1))


def find_secrets(text: str) -> tuple[str, ...]:
    """Names of the secret patterns found (never the secrets)."""
    return tuple(name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text))


def normalise_url(url: str) -> str:
    """Comparable form: no trailing punctuation or slash, scheme and host in lower case."""
    url = url.rstrip(_URL_TRAIL).rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host, slash, path = rest.partition("/")
    host = host.lower().removeprefix("www.")
    return f"{host}{slash}{path}" if scheme.lower() in ("", "http", "https") \
        else f"{scheme.lower()}://{host}{slash}{path}"


def urls_in(text: str) -> list[str]:
    return [normalise_url(match) for match in _URL.findall(text)]


def allowed_urls(texts: Iterable[str]) -> frozenset[str]:
    """The knowledge base's own URLs: those in the given passage texts and source names."""
    found: set[str] = set()
    for text in texts:
        found.update(urls_in(text))
    return frozenset(found)


def allowed_urls_for(reply: str, texts: Iterable[str]) -> frozenset[str]:
    """`allowed_urls(texts)` as `reply` needs it: empty when the reply has no URL, which
    then has nothing to compare (PERF-1: the passages are not scanned for most replies).
    Only `known_urls` reads the allowed set."""
    return allowed_urls(texts) if _URL.search(reply) else frozenset()


def foreign_urls(text: str, allowed: frozenset[str]) -> int:
    """How many URLs in `text` are not among `allowed` (http and https count as one)."""
    return sum(1 for url in urls_in(text) if url not in allowed)


# ----------------------------------------------------------------------- the runner

Check = Callable[[str, OutputPolicy], tuple[str, ...]]
"""One check: the text and the policy in, content-free reason codes out (empty: passed)."""


def no_canary(text: str, policy: OutputPolicy) -> tuple[str, ...]:
    """The canary only ever appears in the system prompt: seeing it means a leak."""
    return (CANARY,) if leaks_canary(text, policy.canary) else ()


def no_system_prompt(text: str, policy: OutputPolicy) -> tuple[str, ...]:
    """Verbatim runs of the system prompt: extraction attacks that dodge the canary."""
    return (SYSTEM_PROMPT,) if leaks_system_prompt(text, policy.system_prompt) else ()


def no_secrets(text: str, policy: OutputPolicy) -> tuple[str, ...]:
    """API keys and tokens, wherever they came from (a document may hold one too)."""
    return tuple(f"{SECRET}:{kind}" for kind in find_secrets(text))


def known_urls(text: str, policy: OutputPolicy) -> tuple[str, ...]:
    """Links only to the knowledge base's own URLs: no phishing or exfiltration links."""
    return (URL,) if foreign_urls(text, policy.allowed_urls) else ()


def length_cap(text: str, policy: OutputPolicy) -> tuple[str, ...]:
    """A runaway answer is a symptom (a loop, a dump of the context), not a reply."""
    return (TOO_LONG,) if len(text) > policy.max_chars else ()


_lock = threading.Lock()
_checks: tuple[Check, ...] | None = None
"""The checks, built once; they are pure, so every thread shares them."""


def _build_checks() -> tuple[Check, ...]:
    return no_canary, no_system_prompt, no_secrets, known_urls, length_cap


def _get_checks() -> tuple[Check, ...]:
    global _checks  # noqa: PLW0603 - built once per process
    if _checks is None:
        with _lock:
            if _checks is None:
                _checks = _build_checks()
    return _checks


def warm() -> None:
    """Build the checks now; `serve` calls it at start-up so a broken guard shows at once
    (logged and alerted there) rather than at the first reply, which would fail closed."""
    _get_checks()


def check_output(text: str, policy: OutputPolicy) -> OutputVerdict:
    """Run every check on `text`; raises on an internal error (callers fail closed)."""
    reasons: list[str] = []
    for check in _get_checks():
        reasons.extend(check(text, policy))
    return OutputVerdict(passed=not reasons, reasons=tuple(dict.fromkeys(reasons)))
