"""Node `threat_check`: refuse prompt injection and jailbreak attempts (SEC-2, first layer)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.timing import elapsed_ms
from graph.state import GraphState
from guards.threats import detect


def threat_check(state: GraphState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Fails closed: if the detector errors, the message is refused."""
    ctx = runtime.context
    started = ctx.clock()
    try:
        verdict = detect(state["text"])
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        return {"fallback_reason": "guard_error", "error": type(exc).__name__,
                "timings": {"threat_check": elapsed_ms(ctx.clock, started)}}
    return {"fallback_reason": "threat" if verdict.blocked else None,
            "guard_rules": list(verdict.rules),
            "timings": {"threat_check": elapsed_ms(ctx.clock, started)}}
