"""Node `sanitize`: normalise the message and enforce the length limit (SEC-1)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.timing import elapsed_ms
from graph.state import GraphState
from guards.sanitize import sanitize as clean

# A checkpointed thread keeps the previous run's fields: the first node clears them.
FRESH_RUN: dict[str, Any] = {"guard_rules": [], "passages": [], "answer": "", "citations": [],
                             "reply": "", "model": "none", "error": None}


def sanitize(state: GraphState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Fails closed: an error inside the guard refuses the message."""
    ctx = runtime.context
    started = ctx.clock()
    fresh = dict(FRESH_RUN)
    history = state.get("history") or []
    if history and ctx.wall_clock() - history[-1]["at"] > ctx.memory_ttl:
        fresh["history"] = []  # inactive too long: the conversation starts over
    try:
        result = clean(state["question"], ctx.max_input_chars)
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        return {**fresh, "fallback_reason": "guard_error", "error": type(exc).__name__,
                "text": "",
                "timings": {"sanitize": elapsed_ms(ctx.clock, started)}}
    return {**fresh, "text": result.text, "fallback_reason": result.refusal,
            "timings": {"sanitize": elapsed_ms(ctx.clock, started)}}
