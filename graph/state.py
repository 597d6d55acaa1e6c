"""The graph's state: what flows between nodes for one question."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Final, NotRequired, cast, get_type_hints

# pydantic, which the LangGraph API builds its input/output schemas with, refuses
# typing.TypedDict before Python 3.12
from typing_extensions import TypedDict

from graph.contract import FIRST_NODE, FallbackReason


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
    chunk_id: NotRequired[str]
    """The index's id of the chunk (feedback export links a reaction to it)."""


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


@dataclass(frozen=True, slots=True)
class PerRun:
    """Field marker: the value a field takes when a run starts.

    With a checkpointer the state outlives a run; the first node applies `fresh_run()`,
    so a run never reports a field the previous run of its thread set. Every field of
    `GraphState` is an input, has a reducer that says how runs combine (`timings`,
    `history`), or carries this marker (tests/unit/graph/test_state.py holds that).
    """

    start: object


class GraphState(TypedDict, total=False):
    """The whole state; every key is optional, so a node's partial update is a
    `GraphState` too, which mypy checks key by key."""

    question: str
    """The user's message as received (never logged)."""
    chat_kind: str
    user: str
    """Opaque user key, used in audit events."""
    text: Annotated[str, PerRun("")]
    """The sanitised question that retrieval and the model see."""
    fallback_reason: Annotated[FallbackReason | None, PerRun(None)]
    """Why the run left the happy path; None while it is on it."""
    guard_rules: Annotated[list[str], PerRun([])]
    """Names of the guard rules that matched (safe to log)."""
    hidden_text: Annotated[bool, PerRun(False)]
    """The message carried invisible characters (zero-width, bidi, tags, controls): a
    signal for anomaly detection even when nothing else matched."""
    passages: Annotated[list[Passage], PerRun([])]
    """Passages above the relevance floor, best first."""
    answer: Annotated[str, PerRun("")]
    """The answer body without the sources list."""
    citations: Annotated[list[Citation], PerRun([])]
    """Numbered sources the answer refers to."""
    reply: Annotated[str, PerRun("")]
    """The full text to send back: answer plus numbered sources."""
    model: Annotated[str, PerRun("none")]
    """Which answerer produced the reply ("extractive" or the model name; "none")."""
    error: Annotated[str | None, PerRun(None)]
    """Exception class name of a failure (never its message: it may echo input)."""
    error_code: Annotated[str | None, PerRun(None)]
    """The model API's machine-readable error code, e.g. `insufficient_quota` (OBS-6)."""
    usage: Annotated[dict[str, int] | None, PerRun(None)]
    """Tokens the model call used (`input_tokens`, `output_tokens`), when it reports them."""
    timings: Annotated[dict[str, float], merge_timings]
    """Per-node latency in milliseconds (the node wrapper, `graph/nodes/traced.py`)."""
    history: Annotated[list[Exchange], keep_recent]
    """Earlier exchanges of this thread (checkpointed); expired after inactivity."""


class GraphOutput(TypedDict, total=False):
    reply: str
    citations: list[Citation]
    fallback_reason: FallbackReason | None
    passages: list[Passage]
    """For the caller's feedback record (cited chunk ids, top similarity); never sent."""


PER_RUN: Final[dict[str, object]] = {
    name: marker.start
    for name, hint in get_type_hints(GraphState, include_extras=True).items()
    for marker in getattr(hint, "__metadata__", ()) if isinstance(marker, PerRun)}
"""Each per-run field and its start value, read from the `PerRun` markers above."""


def fresh_run() -> GraphState:
    """An update that resets every per-run field (a new copy of each start value)."""
    return cast(GraphState, {name: copy.copy(start) for name, start in PER_RUN.items()})
