"""graph/state.py: every field's life across the runs of a checkpointed thread is declared,
and the first node's reset covers every per-run field."""

from __future__ import annotations

from typing import get_type_hints

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import build_graph, model_retry_policy
from graph.state import PER_RUN, GraphInput, GraphState, PerRun, fresh_run
from tests.unit.graph.graph_helpers import FAQ, GUIDE, FixedKnowledge, context


def _reducers() -> set[str]:
    hints = get_type_hints(GraphState, include_extras=True)
    return {name for name, hint in hints.items()
            if callable(getattr(hint, "__metadata__", (None,))[-1])}


def test_every_field_is_an_input_per_run_or_reduced_and_only_one() -> None:
    fields = set(GraphState.__annotations__)
    inputs, per_run, reduced = set(GraphInput.__annotations__), set(PER_RUN), _reducers()
    assert inputs | per_run | reduced == fields, "declare how a new field lives across runs"
    assert not inputs & per_run and not inputs & reduced and not per_run & reduced
    assert reduced == {"timings", "history"}


def test_the_reset_is_read_from_the_markers_and_never_shared() -> None:
    hints = get_type_hints(GraphState, include_extras=True)
    for name, start in PER_RUN.items():
        [marker] = [m for m in hints[name].__metadata__ if isinstance(m, PerRun)]
        assert marker.start == start
    first, second = fresh_run(), fresh_run()
    first["guard_rules"].append("x")
    assert second["guard_rules"] == [] and PER_RUN["guard_rules"] == []
    assert fresh_run()["model"] == "none", "the audit event's model of a run with no answerer"


def _quota_error() -> openai.RateLimitError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return openai.RateLimitError("quota", response=httpx.Response(429, request=request),
                                 body={"code": "insufficient_quota"})


class QuotaModel(GenericFakeChatModel):
    async def _agenerate(self, *args, **kwargs):  # type: ignore[override]
        raise _quota_error()


async def _leftovers(first_ctx_model: GenericFakeChatModel) -> tuple[dict, dict]:
    """(state after a full run, state after a too-long message on the same thread)."""
    graph = build_graph(retry_policy=model_retry_policy(1, initial_interval=0.001,
                                                        jitter=False),
                        checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    ctx = context(knowledge=FixedKnowledge(GUIDE, FAQ), chat_model=first_ctx_model,
                  model_name="fake")
    await graph.ainvoke({"question": "locked\u200b out?", "user": "u"}, config, context=ctx)
    before = dict((await graph.aget_state(config)).values)
    await graph.ainvoke({"question": "x" * 3000, "user": "u"}, config, context=ctx)
    return before, dict((await graph.aget_state(config)).values)


async def test_a_refused_message_shows_nothing_of_the_previous_run() -> None:
    answered = GenericFakeChatModel(messages=iter([AIMessage(
        "One hour [1].", usage_metadata={"input_tokens": 5, "output_tokens": 3,
                                         "total_tokens": 8})]))
    set_by_refusal = {"text", "fallback_reason", "reply", "citations"}  # sanitize, fallback
    changed: set[str] = set()
    for model in (answered, QuotaModel(messages=iter([]))):
        before, after = await _leftovers(model)
        changed |= {name for name, start in PER_RUN.items() if before.get(name) != start}
        for name, start in PER_RUN.items():
            if name not in set_by_refusal:
                assert after.get(name) == start, f"{name} leaked from the previous run"
        assert after["fallback_reason"] == "too_long" and after["citations"] == []
        assert set(after["timings"]) == {"sanitize", "fallback", "output_guard"}
    assert changed == set(PER_RUN), "the first runs set every per-run field, so each is tested"
