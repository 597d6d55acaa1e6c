"""Node `output_guard`: every reply passes the output guard before it is sent (SEC-4).

It runs after `generate` and after `fallback`, so extractive answers, which quote the
documents, are checked too; the URLs in the retrieved passages and their source names are
the allowed set. A failing reply is replaced by a fixed safe one and its reason codes go to
the audit; a model answer joins the conversation memory only once it has passed, so a
leaked answer is never fed back to the model. Fails closed: if the guard itself errors,
the user gets "temporarily unavailable" and operators an alert.
"""

from __future__ import annotations

import threading

from langgraph.runtime import Runtime

from graph.citations import has_text
from graph.context import GraphContext
from graph.contract import PROMPT_LEAK
from graph.nodes.alerting import guard_failed, raise_alert
from graph.nodes.fallback import MESSAGES, UNAVAILABLE
from graph.prompts import system_prompt
from graph.state import Exchange, GraphState
from guards.output import CANARY, SYSTEM_PROMPT, OutputPolicy, allowed_urls_for, check_output

_LOADED = threading.Event()
"""Set once the output guard has answered in this process (its library is loaded)."""


def output_guard_loaded() -> bool:
    """Whether a check can no longer wait for the guard's library to load (PERF-1: until
    then the node runs on the thread pool, not on the event loop)."""
    return _LOADED.is_set()


def output_guard(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    passages = state.get("passages") or []
    reply = state.get("reply", "")
    try:
        sources = [p["source"] for p in passages] + [p["text"] for p in passages]
        policy = OutputPolicy(canary=ctx.canary, system_prompt=system_prompt(ctx.canary),
                              allowed_urls=allowed_urls_for(reply, sources),
                              max_chars=ctx.max_reply_chars)
        verdict = check_output(reply, policy)
        _LOADED.set()
    except Exception as exc:  # noqa: BLE001 - fail closed: an unchecked reply is never sent
        guard_failed(ctx, "output_guard", exc)
        return {"reply": UNAVAILABLE, "answer": "", "citations": [],
                "fallback_reason": "guard_error", "error": type(exc).__name__}
    if not verdict.passed:
        if CANARY in verdict.reasons or SYSTEM_PROMPT in verdict.reasons:
            raise_alert(ctx, PROMPT_LEAK, guard="output_guard")
        rules = list(state.get("guard_rules", [])) + [f"output:{r}" for r in verdict.reasons]
        return {"reply": MESSAGES["output_blocked"], "answer": "", "citations": [],
                "fallback_reason": "output_blocked", "guard_rules": rules}
    answered = state.get("fallback_reason") is None
    if not has_text(state.get("answer", "") if answered else state.get("reply", "")):
        # Last line of defence: whatever produced it, an empty answer is never sent.
        return {"reply": MESSAGES["no_context"], "answer": "", "citations": [],
                "fallback_reason": "no_context", "error": "EmptyAnswer"}
    if ctx.chat_model is not None and answered and state.get("answer"):
        exchange = Exchange(question=state["text"], answer=state["answer"],
                            at=ctx.wall_clock())
        return {"history": [exchange]}
    return {}
