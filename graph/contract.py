"""The contract between the graph and the rest: node names, routes, the run event, and the
alert conditions the graph raises. Everything outside `graph/` that names one of these
imports it from here; nothing rebuilds the strings.

Standard library only, so the audit reader (`signal-rag audit`) and tools drawing the
graph's traffic can import it without loading LangGraph.
"""

from __future__ import annotations

from typing import Final, Literal, NewType, TypedDict, get_args

# ------------------------------------------------------------------ nodes

NodeName = Literal["sanitize", "threat_check", "retrieve", "generate", "fallback",
                   "output_guard", "audit"]
"""Every node of the graph; the builder adds them in this order."""
NODES: Final[tuple[NodeName, ...]] = get_args(NodeName)
FIRST_NODE: Final[NodeName] = "sanitize"
"""Where every run starts: it clears the previous run's fields of a checkpointed thread."""

# ------------------------------------------------------------------ routes

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
"""Why a run left the happy path (the state's `fallback_reason`)."""
FALLBACK_REASONS: Final[tuple[FallbackReason, ...]] = get_args(FallbackReason)

Route = NewType("Route", str)
"""How a run ended, as the audit trail, metrics and alerts name it: `answered` or
`fallback:<reason>`. Build one with `route_of`, read one with `reason_of`."""
ANSWERED: Final = Route("answered")
FALLBACK_PREFIX: Final = "fallback:"


def route_of(reason: FallbackReason | None) -> Route:
    """The route of a run that ended with `reason` (None: answered)."""
    return Route(f"{FALLBACK_PREFIX}{reason}") if reason else ANSWERED


def reason_of(route: str) -> FallbackReason | None:
    """The inverse of `route_of`; ValueError for a string that is not a route (the audit
    trail is read back from disk, so it may hold anything)."""
    try:
        return _REASONS[route]
    except KeyError:
        raise ValueError(f"not a route: {route[:80]!r}") from None


ROUTES: Final[tuple[Route, ...]] = (ANSWERED, *(route_of(r) for r in FALLBACK_REASONS))
_REASONS: Final[dict[str, FallbackReason | None]] = {
    ANSWERED: None, **{route_of(r): r for r in FALLBACK_REASONS}}

ERROR_REASONS: Final[frozenset[FallbackReason]] = frozenset(
    {"model_error", "guard_error", "circuit_open"})
"""The bot failed at its job (not the user's input): the error rate counts these."""
BLOCKED_REASONS: Final[frozenset[FallbackReason]] = frozenset({"threat", "output_blocked"})
"""A guard refused the message or the reply: input to anomaly detection and `audit stats`."""
ERROR_ROUTES: Final[frozenset[Route]] = frozenset(route_of(r) for r in ERROR_REASONS)
BLOCKED_ROUTES: Final[frozenset[Route]] = frozenset(route_of(r) for r in BLOCKED_REASONS)

# ------------------------------------------------------------------ the run event

RUN_EVENT: Final = "graph_run"
"""The `event` of a run event; audit lines without an `event` key are run events too."""


class RunEvent(TypedDict):
    """One content-free audit event per run (OBS-2), written by the `audit` node.

    On disk it is one JSON line, `ts` (added by the sink) first and then these keys in this
    order; the format is stable: readers (`signal-rag audit`, metrics, alerts) depend on it.
    """

    event: Literal["graph_run"]
    user: str
    """HMAC of the Signal id (never the id)."""
    route: Route
    guard_rules: list[str]
    """Names of the rules that matched; `passage:` and `output:` prefixes for passages and
    replies."""
    hidden_text: bool
    chat: str
    """`dm`, `group`, `local` or `unknown`."""
    passages: int
    top_similarity: float | None
    citations: int
    model: str
    """`extractive`, the model's name, or `none` when no answerer ran."""
    tokens_in: int | None
    tokens_out: int | None
    reply_chars: int
    error: str | None
    """Exception class name of a failure (never its message)."""
    error_code: str | None
    timings_ms: dict[str, float]
    """Milliseconds per node that ran, in the order they ran (keys are `NodeName`s; every
    run ends in `audit`, which writes this event and is not in it)."""
    total_ms: float
    run_id: str | None
    """The run's id from its config as 32 hex digits: the trace id in the bot, the run id
    under the LangGraph API; None when the caller gave none."""


# ------------------------------------------------------------------ alert conditions

GUARD_ERROR: Final = "guard_error"
"""A guard raised, so the message was refused (fail closed); fields: `guard`, `error`."""
PROMPT_LEAK: Final = "prompt_leak"
"""A reply carried the system prompt or its canary and was blocked; field: `guard`."""
GRAPH_ALERTS: Final[tuple[str, ...]] = (GUARD_ERROR, PROMPT_LEAK)
"""The conditions graph nodes raise through `GraphContext.alerts`; the operator catalogue
(agent/observability/alerts.py) lists them with the application's own."""
