"""Node `threat_check`: refuse prompt injection and jailbreak attempts (SEC-2, first layer).

Runs on the sanitised text, so zero-width splitting and fullwidth letters are already
undone. Fails closed: if the detector errors, the message is refused and operators alerted.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.alerting import guard_failed
from graph.nodes.timing import elapsed_ms
from graph.state import GraphState
from guards.threats import detect


def threat_check(state: GraphState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.clock()
    rules = list(state.get("guard_rules", []))  # sanitize's findings stay in the audit
    try:
        verdict = detect(state["text"])
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        guard_failed(ctx, "threat_check", exc)
        return {"fallback_reason": "guard_error", "error": type(exc).__name__,
                "timings": {"threat_check": elapsed_ms(ctx.clock, started)}}
    return {"fallback_reason": "threat" if verdict.blocked else None,
            "guard_rules": rules + list(verdict.rules),
            "timings": {"threat_check": elapsed_ms(ctx.clock, started)}}
