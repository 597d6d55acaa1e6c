"""Node `retrieve`: find passages above the relevance floor; drop any that carry an attack.

Retrieved text is untrusted too (indirect injection): each passage is normalised like a
message (NFKC, invisible characters removed) and the threat rules run on that form, which
is also the only form the model ever sees, so text hidden from the rules cannot reach it.
Passages matching a rule are left out. An unavailable knowledge base routes to the
degraded fallback. The passage check fails closed: if it errors, the message is refused
and operators are alerted, rather than answering from unchecked text. Checks computed
ahead of time for the index (`context.passage_checks`, guards/passages.py) are used when
there is one for the chunk.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.alerting import guard_failed
from graph.state import GraphState, Passage
from guards.passages import check_passage
from guards.sanitize import HIDDEN_RULE, clean_passage


def retrieve(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    if ctx.knowledge is None:
        return {"fallback_reason": "index_unavailable", "passages": []}
    try:
        found = ctx.knowledge.search(state["text"], ctx.top_k)
    except Exception as exc:  # noqa: BLE001 - any retrieval failure is the degraded path
        return {"fallback_reason": "index_unavailable", "passages": [],
                "error": type(exc).__name__}
    passages: list[Passage] = []
    rules = list(state.get("guard_rules", []))
    hidden = False
    checks = ctx.passage_checks
    for hit in found:
        try:
            check = checks.get(hit.chunk.text) if checks is not None else None
            if check is None:  # passages: the higher learned threshold
                check = check_passage(hit.chunk.text)
            title = clean_passage(hit.chunk.title)[0]
        except Exception as exc:  # noqa: BLE001 - fail closed: no unchecked passage is used
            guard_failed(ctx, "passage_check", exc)
            return {"fallback_reason": "guard_error", "passages": [],
                    "error": type(exc).__name__}
        hidden = hidden or check.hidden
        if check.verdict.blocked:
            rules.extend(f"passage:{rule}" for rule in check.verdict.rules)
            continue
        passages.append(Passage(source=hit.chunk.source, title=title,
                                page=hit.chunk.page, text=check.text,
                                similarity=round(hit.similarity, 4)))
    if hidden:
        rules.append(f"passage:{HIDDEN_RULE}")
    return {"passages": passages, "guard_rules": rules,
            "fallback_reason": None if passages else "no_context"}
