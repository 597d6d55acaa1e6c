"""Node `retrieve`: find passages above the relevance floor; drop any that carry an attack.

Retrieved text is untrusted too (indirect injection): passages matching a threat rule are
left out. An unavailable knowledge base routes to the degraded fallback, never an error.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.timing import elapsed_ms
from graph.state import GraphState, Passage
from guards.threats import detect


def retrieve(state: GraphState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.clock()
    if ctx.knowledge is None:
        return {"fallback_reason": "index_unavailable", "passages": [],
                "timings": {"retrieve": elapsed_ms(ctx.clock, started)}}
    try:
        found = ctx.knowledge.search(state["text"], ctx.top_k)
    except Exception as exc:  # noqa: BLE001 - any retrieval failure is the degraded path
        return {"fallback_reason": "index_unavailable", "passages": [],
                "error": type(exc).__name__,
                "timings": {"retrieve": elapsed_ms(ctx.clock, started)}}
    passages: list[Passage] = []
    rules = list(state.get("guard_rules", []))
    for hit in found:
        try:
            verdict = detect(hit.chunk.text)
        except Exception:  # noqa: BLE001, S112 - fail closed: an unchecked passage is not used
            continue
        if verdict.blocked:
            rules.extend(f"passage:{rule}" for rule in verdict.rules)
            continue
        passages.append(Passage(source=hit.chunk.source, title=hit.chunk.title,
                                page=hit.chunk.page, text=hit.chunk.text,
                                similarity=round(hit.similarity, 4)))
    return {"passages": passages, "guard_rules": rules,
            "fallback_reason": None if passages else "no_context",
            "timings": {"retrieve": elapsed_ms(ctx.clock, started)}}
