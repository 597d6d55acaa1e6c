"""Node `audit`: one content-free event per run (OBS-2): user key, route, verdicts, latencies.

An audit sink failure never costs the user the reply; it is reported on the event stream
of the process (the application's logging) instead.
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.state import GraphState

log = logging.getLogger(__name__)


def audit(state: GraphState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    reason = state.get("fallback_reason")
    timings = dict(state.get("timings", {}))
    event = {
        "event": "graph_run",
        "user": state.get("user", ""),
        "route": f"fallback:{reason}" if reason else "answered",
        "guard_rules": list(state.get("guard_rules", [])),
        "hidden_text": bool(state.get("hidden_text")),
        "passages": len(state.get("passages") or []),
        "citations": len(state.get("citations") or []),
        "model": state.get("model", "none"),
        "error": state.get("error"),
        "error_code": state.get("error_code"),
        "timings_ms": timings,
        "total_ms": round(sum(timings.values()), 3),
    }
    try:
        ctx.audit.emit(event)
    except Exception as exc:  # noqa: BLE001 - the reply must still go out
        log.error("audit_emit_failed", extra={"error": type(exc).__name__})
    return {}
