"""The graph's state: what flows between nodes for one question."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

# pydantic, which the LangGraph API builds its input/output schemas with, refuses
# typing.TypedDict before Python 3.12
from typing_extensions import TypedDict

FallbackReason = Literal[
    "empty",              # nothing left after sanitising
    "too_long",           # over the input limit
    "threat",             # a threat rule matched
    "guard_error",        # a guard itself failed: fail closed
    "index_unavailable",  # no verified index loaded (degraded mode)
    "no_context",         # nothing above the relevance floor
    "circuit_open",       # the model's circuit breaker is open
    "model_error",        # the model failed after retries, or refused the request
    "output_blocked",     # the output guard refused the reply (leak, secret, foreign URL)
]


FIRST_NODE = "sanitize"


def merge_timings(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    """Reducer: each node adds its own latency; the first node starts a new run's timings.

    With a checkpointer the state outlives a run, so without the reset a blocked message
    would report the previous run's retrieve and generate latencies as its own.
    """
    if FIRST_NODE in right:
        return dict(right)
    return {**left, **right}


MAX_EXCHANGES = 5
"""Conversation memory: the last exchanges given to the model (ACC-4)."""


class Exchange(TypedDict):
    question: str
    answer: str
    at: float
    """Wall-clock time of the answer, for the inactivity expiry."""


def keep_recent(left: list[Exchange], right: list[Exchange]) -> list[Exchange]:
    """Reducer: append new exchanges and keep the last MAX_EXCHANGES; an empty list resets."""
    if not right:
        return []
    return (left + right)[-MAX_EXCHANGES:]


class Passage(TypedDict):
    """A retrieved chunk as plain data, so checkpoints serialise it without pickling."""

    source: str
    title: str
    page: int | None
    text: str
    similarity: float


class Citation(TypedDict):
    number: int
    title: str
    source: str
    page: int | None


class GraphInput(TypedDict):
    """What callers may pass in."""

    question: str
    """The user's message as received."""
    user: str
    """An opaque user key (HMAC of the Signal id): never the raw id or phone number."""
    chat_kind: NotRequired[str]
    """"dm", "group" or "local" (the terminal), for the audit trail."""


class GraphState(TypedDict, total=False):
    question: str
    """The user's message as received (never logged)."""
    chat_kind: str
    user: str
    """Opaque user key, used in audit events."""
    text: str
    """The sanitised question that retrieval and the model see."""
    fallback_reason: FallbackReason | None
    """Why the run left the happy path; None while it is on it."""
    guard_rules: list[str]
    """Names of the guard rules that matched (safe to log)."""
    hidden_text: bool
    """The message carried invisible characters (zero-width, bidi, tags, controls): a
    signal for anomaly detection even when nothing else matched."""
    passages: list[Passage]
    """Passages above the relevance floor, best first."""
    answer: str
    """The answer body without the sources list."""
    citations: list[Citation]
    """Numbered sources the answer refers to."""
    reply: str
    """The full text to send back: answer plus numbered sources."""
    model: str
    """Which answerer produced the reply ("extractive" or the model name)."""
    error: str | None
    """Exception class name of a failure (never its message: it may echo input)."""
    error_code: str | None
    """The model API's machine-readable error code, e.g. `insufficient_quota` (OBS-6)."""
    usage: dict[str, int] | None
    """Tokens the model call used (`input_tokens`, `output_tokens`), when it reports them."""
    timings: Annotated[dict[str, float], merge_timings]
    """Per-node latency in milliseconds."""
    history: Annotated[list[Exchange], keep_recent]
    """Earlier exchanges of this thread (checkpointed); expired after inactivity."""


class GraphOutput(TypedDict, total=False):
    reply: str
    citations: list[Citation]
    fallback_reason: FallbackReason | None
