"""Node `sanitize`: normalise the message and enforce the length limit (SEC-1).

Fails closed: an error inside the guard refuses the message and alerts operators.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.alerting import guard_failed
from graph.nodes.timing import elapsed_ms
from graph.state import GraphState
from guards.sanitize import HIDDEN_RULE
from guards.sanitize import sanitize as clean

# A checkpointed thread keeps the previous run's fields: the first node clears them.
FRESH_RUN: dict[str, Any] = {"guard_rules": [], "passages": [], "answer": "", "citations": [],
                             "reply": "", "model": "none", "error": None,
                             "error_code": None, "usage": None,
                             "hidden_text": False}


def sanitize(state: GraphState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.clock()
    fresh = dict(FRESH_RUN)
    history = state.get("history") or []
    if history and ctx.wall_clock() - history[-1]["at"] > ctx.memory_ttl:
        fresh["history"] = []  # inactive too long: the conversation starts over
    try:
        result = clean(state["question"], ctx.max_input_chars)
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        guard_failed(ctx, "sanitize", exc)
        return {**fresh, "fallback_reason": "guard_error", "error": type(exc).__name__,
                "text": "",
                "timings": {"sanitize": elapsed_ms(ctx.clock, started)}}
    rules = [HIDDEN_RULE] if result.hidden_text else []
    return {**fresh, "text": result.text, "fallback_reason": result.refusal,
            "hidden_text": result.hidden_text, "guard_rules": rules,
            "timings": {"sanitize": elapsed_ms(ctx.clock, started)}}
