"""Output guard (SEC-4): what the bot is about to send must not leak or point outside.

Checks, as guardrails-ai custom validators (hub validators need the internet): the
per-deployment canary, verbatim runs of the system prompt, secrets (API keys, tokens,
private keys), URLs that are not the knowledge base's own, and a length cap. The checks
themselves are plain functions here, so they are testable without guardrails; the
validators only wrap them and report content-free reason codes.

Fails closed: this module raises on any internal error, and the graph's `output_guard`
node answers "temporarily unavailable" and alerts instead of sending the text.

guardrails-ai is imported lazily (it takes seconds) and configured before first use:
hub telemetry off (it exports spans to a remote host by default), its OpenTelemetry
tracing off (it would put answer text into our traces), history not kept and no server
mode. No `Guard` object is used at all (see `check_output`), so no call history exists.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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


def foreign_urls(text: str, allowed: frozenset[str]) -> int:
    """How many URLs in `text` are not among `allowed` (http and https count as one)."""
    return sum(1 for url in urls_in(text) if url not in allowed)


# ---------------------------------------------------------------------- guardrails

_lock = threading.Lock()
_checks: tuple[Any, ...] | None = None
"""Our registered validators, built once; they are pure, so every thread shares them."""
_fail_result: Any = None


def _quiet_guardrails() -> None:
    """Import guardrails with telemetry, tracing, history and server mode off."""
    os.environ["GUARD_HISTORY_ENABLED"] = "false"
    import guardrails
    from guardrails.classes.rc import RC
    from guardrails.utils.hub_telemetry_utils import HubTelemetry

    guardrails.settings.rc = RC(enable_metrics=False, use_remote_inferencing=False)
    guardrails.settings.disable_tracing = True
    guardrails.settings.use_server = False
    HubTelemetry(enabled=False)._enabled = False  # the only switch there is


def _register_validators() -> tuple[Any, ...]:
    """Define and register our validators (once per process: the registry is global)."""
    from guardrails import register_validator
    from guardrails.validators import FailResult, PassResult, Validator

    def result(reasons: tuple[str, ...]) -> Any:
        return FailResult(error_message=",".join(reasons)) if reasons else PassResult()

    @register_validator(name="signal-rag/no-canary", data_type="string")
    class NoCanary(Validator):  # type: ignore[misc]
        """The canary only ever appears in the system prompt: seeing it means a leak."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            return result((CANARY,) if leaks_canary(str(value), metadata["canary"]) else ())

    @register_validator(name="signal-rag/no-system-prompt", data_type="string")
    class NoSystemPrompt(Validator):  # type: ignore[misc]
        """Verbatim runs of the system prompt: extraction attacks that dodge the canary."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            leaked = leaks_system_prompt(str(value), metadata["system_prompt"])
            return result((SYSTEM_PROMPT,) if leaked else ())

    @register_validator(name="signal-rag/no-secrets", data_type="string")
    class NoSecrets(Validator):  # type: ignore[misc]
        """API keys and tokens, wherever they came from (a document may hold one too)."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            return result(tuple(f"{SECRET}:{kind}" for kind in find_secrets(str(value))))

    @register_validator(name="signal-rag/known-urls", data_type="string")
    class KnownUrls(Validator):  # type: ignore[misc]
        """Links only to the knowledge base's own URLs: no phishing or exfiltration links."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            foreign = foreign_urls(str(value), metadata["allowed_urls"])
            return result((URL,) if foreign else ())

    @register_validator(name="signal-rag/length-cap", data_type="string")
    class LengthCap(Validator):  # type: ignore[misc]
        """A runaway answer is a symptom (a loop, a dump of the context), not a reply."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            return result((TOO_LONG,) if len(str(value)) > metadata["max_chars"] else ())

    return NoCanary, NoSystemPrompt, NoSecrets, KnownUrls, LengthCap


def _get_validators() -> tuple[Any, ...]:
    """The validators, built on first use (guardrails is imported then, once)."""
    global _checks, _fail_result  # noqa: PLW0603 - built once per process
    if _checks is None:
        with _lock:
            if _checks is None:
                _quiet_guardrails()
                from guardrails import OnFailAction
                from guardrails.validators import FailResult

                _fail_result = FailResult
                _checks = tuple(validator(on_fail=OnFailAction.NOOP)
                                for validator in _register_validators())
    return _checks


def warm() -> None:
    """Import and configure guardrails now (seconds), so the first reply does not wait."""
    _get_validators()


def check_output(text: str, policy: OutputPolicy) -> OutputVerdict:
    """Run every validator on `text`; raises on an internal error (callers fail closed).

    Each validator is called through guardrails' external `Validator.validate`, not a
    `Guard`: a Guard adds call history, tracing hooks and 2-6 ms per reply (measured: it
    was most of the graph's overhead, PERF-1), and keeps nothing we need.
    """
    validators = _get_validators()
    metadata = {"canary": policy.canary, "system_prompt": policy.system_prompt,
                "allowed_urls": policy.allowed_urls, "max_chars": policy.max_chars}
    reasons: list[str] = []
    for validator in validators:
        outcome = validator.validate(text, metadata)
        if isinstance(outcome, _fail_result):
            reasons.extend((outcome.error_message or "unknown").split(","))
    return OutputVerdict(passed=not reasons, reasons=tuple(dict.fromkeys(reasons)))
