"""Node `fallback`: the one reply for every path that left the happy path.

Its reply still goes through `output_guard`: the extractive answer quotes documents.

When the model is unavailable but passages were found, the user still gets the
extractive answer, marked as such; that is fast (no model call) and more useful than
an apology.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.citations import format_reply, has_text
from graph.context import GraphContext
from graph.contract import FallbackReason
from graph.extractive import extractive_answer
from graph.state import Citation, GraphState

UNAVAILABLE = "The assistant is temporarily unavailable. Please try again in a few minutes."

MESSAGES: dict[FallbackReason, str] = {
    "empty": "Your message was empty. Send me a question about the documents.",
    "too_long": "Your message is too long: please keep it to {limit} characters or fewer.",
    "threat": "I can't help with that request. Ask me a question about the documents.",
    "guard_error": UNAVAILABLE,
    "index_unavailable": ("The knowledge base is unavailable right now, so I can't answer. "
                          "Please try again later."),
    "no_context": ("I don't know: the documents I have don't cover that. "
                   "Try rephrasing your question."),
    "circuit_open": UNAVAILABLE,
    "model_error": UNAVAILABLE,
    "output_blocked": ("I couldn't give a safe answer to that. "
                       "Please ask another question about the documents."),
}
MODEL_DOWN_PREFIX = "The language model is unavailable right now; here is what the documents say:"


def fallback(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    reason: FallbackReason = state.get("fallback_reason") or "model_error"
    passages = state.get("passages") or []
    answer, citations = "", list[Citation]()
    if reason in ("circuit_open", "model_error") and passages:
        answer, citations = extractive_answer(state.get("text", ""), passages)
    if has_text(answer):
        reply = format_reply(f"{MODEL_DOWN_PREFIX}\n{answer}", citations)
    else:
        citations = []
        reply = MESSAGES[reason].format(limit=ctx.max_input_chars)
    return {"reply": reply, "citations": citations, "fallback_reason": reason}
