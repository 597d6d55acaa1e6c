"""Node `threat_check`: refuse prompt injection and jailbreak attempts (SEC-2, first layer).

Runs on the sanitised text, so zero-width splitting and fullwidth letters are already
undone: rules, decoders and the n-gram model (`guards.threats.detect`), then the embedding
head (`guards.semantic`) on the message's query vector when the context can embed it (the
same vector retrieval uses), then the fine-tuned encoder (`guards.encoder`) when it is
switched on. Fails closed: if the detector, the head's weights or the encoder error, the
message is refused and operators alerted. An embedder that fails is left to `retrieve`,
which then takes the degraded path without calling the model.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.alerting import guard_failed
from graph.state import GraphState
from guards.encoder import ENCODER_RULE
from guards.semantic import SEMANTIC_RULE, default_head
from guards.threats import detect


def threat_check(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    rules = list(state.get("guard_rules", []))  # sanitize's findings stay in the audit
    try:
        verdict = detect(state["text"])
        found = list(verdict.rules)
        if not verdict.blocked and ctx.query_vector is not None:
            head = default_head()
            vector = _vector(ctx, state["text"])
            if vector is not None and head.blocks(vector, "message"):
                found.append(SEMANTIC_RULE)
        if not found and ctx.encoder is not None and ctx.encoder().blocks(state["text"]):
            found.append(ENCODER_RULE)
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        guard_failed(ctx, "threat_check", exc)
        return {"fallback_reason": "guard_error", "error": type(exc).__name__}
    return {"fallback_reason": "threat" if found else None, "guard_rules": rules + found}


def _vector(ctx: GraphContext, text: str) -> object:
    """The message's query vector, or None when the embedder fails (retrieve handles that)."""
    assert ctx.query_vector is not None
    try:
        return ctx.query_vector(text)
    except Exception:  # noqa: BLE001 - the embedder's failure is retrieval's degraded path
        return None
