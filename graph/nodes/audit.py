"""Node `audit`: one content-free event per run (OBS-2): user key, route, verdicts, latencies.

`run_id` is the run's id from its config (LangGraph's own `run_id`): the bot passes its
trace id there, the LangGraph API its run id, so one id finds a run in the audit trail and
in the trace (`signal-rag graph --from-audit FILE --run ID`).

An audit sink failure never costs the user the reply; it is reported on the event stream
of the process (the application's logging) instead.
"""

from __future__ import annotations

import logging
import uuid
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
        "run_id": run_id(runtime),
        "user": state.get("user", ""),
        "route": f"fallback:{reason}" if reason else "answered",
        "guard_rules": list(state.get("guard_rules", [])),
        "hidden_text": bool(state.get("hidden_text")),
        "chat": state.get("chat_kind", "unknown"),
        "passages": len(state.get("passages") or []),
        "top_similarity": max((p["similarity"] for p in state.get("passages") or []),
                              default=None),
        "citations": len(state.get("citations") or []),
        "model": state.get("model", "none"),
        "tokens_in": (state.get("usage") or {}).get("input_tokens"),
        "tokens_out": (state.get("usage") or {}).get("output_tokens"),
        "reply_chars": len(state.get("reply") or ""),
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


def run_id(runtime: Runtime[GraphContext]) -> str | None:
    """The config's `run_id` as 32 hex digits (an OpenTelemetry trace id's form), or None."""
    raw = runtime.execution_info.run_id if runtime.execution_info is not None else None
    if not raw:
        return None
    try:
        return uuid.UUID(str(raw)).hex
    except ValueError:
        return None
