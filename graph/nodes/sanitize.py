"""Node `sanitize`: normalise the message and enforce the length limit (SEC-1).

As the first node it also starts the run: a checkpointed thread keeps the previous run's
fields, so its update resets every per-run field (`graph.state.fresh_run`).
Fails closed: an error inside the guard refuses the message and alerts operators.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.alerting import guard_failed
from graph.state import GraphState, fresh_run
from guards.sanitize import HIDDEN_RULE
from guards.sanitize import sanitize as clean


def sanitize(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    update = fresh_run()
    history = state.get("history") or []
    if history and ctx.wall_clock() - history[-1]["at"] > ctx.memory_ttl:
        update["history"] = []  # inactive too long: the conversation starts over
    try:
        result = clean(state["question"], ctx.max_input_chars)
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        guard_failed(ctx, "sanitize", exc)
        update.update({"fallback_reason": "guard_error", "error": type(exc).__name__,
                       "text": ""})
        return update
    update.update({"text": result.text, "fallback_reason": result.refusal,
                   "hidden_text": result.hidden_text,
                   "guard_rules": [HIDDEN_RULE] if result.hidden_text else []})
    return update
