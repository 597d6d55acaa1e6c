"""Node `audit`: one content-free event per run (OBS-2): user key, route, verdicts, latencies.

The event's shape is `graph.contract.RunEvent`. The node runs on the event loop: the sink
only queues the event (the file sink's writer thread takes the disk's wait). An audit sink
failure never costs the user the reply; it is reported on the event stream of the process
(the application's logging) instead.

`run_id` is the run's id from its config (LangGraph's own `run_id`): the bot passes its
trace id there, the LangGraph API its run id, so one id finds a run in the audit trail and
in the trace (`signal-rag graph --from-audit FILE --run ID`).
"""

from __future__ import annotations

import logging
import uuid

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.contract import RUN_EVENT, RunEvent, route_of
from graph.state import GraphState

log = logging.getLogger(__name__)


def run_event(state: GraphState, run_id: str | None = None) -> RunEvent:
    """The audit event of the run that `state` ends."""
    timings = dict(state.get("timings", {}))
    passages = state.get("passages") or []
    usage = state.get("usage") or {}
    return RunEvent(
        event=RUN_EVENT,
        user=state.get("user", ""),
        route=route_of(state.get("fallback_reason")),
        guard_rules=list(state.get("guard_rules", [])),
        hidden_text=bool(state.get("hidden_text")),
        chat=state.get("chat_kind", "unknown"),
        passages=len(passages),
        top_similarity=max((p["similarity"] for p in passages), default=None),
        citations=len(state.get("citations") or []),
        model=state.get("model", "none"),
        tokens_in=usage.get("input_tokens"),
        tokens_out=usage.get("output_tokens"),
        reply_chars=len(state.get("reply") or ""),
        error=state.get("error"),
        error_code=state.get("error_code"),
        timings_ms=timings,
        total_ms=round(sum(timings.values()), 3),
        run_id=run_id,
    )


def audit(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    try:
        runtime.context.audit.emit(run_event(state, config_run_id(runtime)))
    except Exception as exc:  # noqa: BLE001 - the reply must still go out
        log.error("audit_emit_failed", extra={"error": type(exc).__name__})
    return {}


def config_run_id(runtime: Runtime[GraphContext]) -> str | None:
    """The config's `run_id` as 32 hex digits (an OpenTelemetry trace id's form), or None."""
    raw = runtime.execution_info.run_id if runtime.execution_info is not None else None
    if not raw:
        return None
    try:
        return uuid.UUID(str(raw)).hex
    except ValueError:
        return None
