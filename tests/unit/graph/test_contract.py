"""graph/contract.py: routes round-trip, the run event's keys are the audit node's and its
JSON lines on disk are unchanged, and the alert names the graph raises are in the operator
catalogue."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from agent.audit import JsonLinesAuditSink
from agent.observability.alerts import CONDITIONS
from graph.builder import build_graph
from graph.contract import (
    ANSWERED,
    BLOCKED_ROUTES,
    ERROR_ROUTES,
    FALLBACK_REASONS,
    GRAPH_ALERTS,
    ROUTES,
    RunEvent,
    reason_of,
    route_of,
)
from graph.nodes.audit import run_event
from tests.unit.graph.graph_helpers import context


@pytest.mark.parametrize("reason", [None, *FALLBACK_REASONS])
def test_route_round_trips_for_every_reason(reason: str | None) -> None:
    route = route_of(reason)  # type: ignore[arg-type]
    assert reason_of(route) == reason
    assert route in ROUTES


def test_routes_are_the_strings_on_disk() -> None:
    """The audit trail and the metrics' labels keep today's strings."""
    assert route_of(None) == ANSWERED == "answered"
    assert route_of("model_error") == "fallback:model_error"
    assert len(set(ROUTES)) == len(FALLBACK_REASONS) + 1
    assert {"fallback:model_error", "fallback:guard_error",
                            "fallback:circuit_open"} == ERROR_ROUTES
    assert {"fallback:threat", "fallback:output_blocked"} == BLOCKED_ROUTES


@pytest.mark.parametrize("text", ["", "fallback:", "fallback:nope", "Answered", "threat",
                                  "fallback:threat ", "fallback:fallback:threat",
                                  "fallback:\x1b[31m", "x" * 10_000])
def test_anything_else_is_not_a_route(text: str) -> None:
    with pytest.raises(ValueError, match="not a route") as caught:
        reason_of(text)
    assert len(str(caught.value)) < 120, "a hostile line is not echoed whole"


def test_the_run_event_has_the_contract_keys_in_order() -> None:
    event = run_event({"user": "u", "fallback_reason": "threat",
                       "timings": {"sanitize": 1.0, "threat_check": 2.5}})
    assert list(event) == list(get_type_hints(RunEvent))
    assert event["route"] == "fallback:threat" and event["total_ms"] == 3.5


def test_the_graph_s_alert_conditions_are_in_the_operator_catalogue() -> None:
    assert set(GRAPH_ALERTS) <= set(CONDITIONS)


ANSWERED_LINE = (
    '{"event":"graph_run","user":"u","route":"answered","guard_rules":["hidden_characters"],'
    '"hidden_text":true,"chat":"dm","passages":2,"top_similarity":0.8,"citations":1,'
    '"model":"m","tokens_in":5,"tokens_out":3,"reply_chars":44,"error":null,'
    '"error_code":null,"timings_ms":{"sanitize":1.0,"threat_check":1.0,"retrieve":1.0,'
    '"generate":1.0,"output_guard":1.0},"total_ms":5.0}')
REFUSED_LINE = (
    '{"event":"graph_run","user":"u","route":"fallback:too_long","guard_rules":[],'
    '"hidden_text":false,"chat":"dm","passages":0,"top_similarity":null,"citations":0,'
    '"model":"none","tokens_in":null,"tokens_out":null,"reply_chars":69,"error":null,'
    '"error_code":null,"timings_ms":{"sanitize":1.0,"fallback":1.0,"output_guard":1.0},'
    '"total_ms":3.0}')


async def test_the_audit_lines_on_disk_are_the_ones_written_before_the_contract(
        tmp_path: Path) -> None:
    """The expected lines were written by the code before graph/contract.py existed (same
    clock, same runs); only the sink's leading `ts` differs between runs, and `run_id`
    (issue 16, the traffic drawing) was added last, after every earlier key."""
    ticks = itertools.count()
    sink = JsonLinesAuditSink(tmp_path / "audit.jsonl")
    model = GenericFakeChatModel(messages=iter([AIMessage(
        "One hour [1].", usage_metadata={"input_tokens": 5, "output_tokens": 3,
                                         "total_tokens": 8})]))
    ctx = context(audit=sink, chat_model=model, model_name="m",
                  clock=lambda: next(ticks) * 0.001)
    graph = build_graph()
    for question in ("locked\u200b out?", "x" * 3000):
        await graph.ainvoke({"question": question, "user": "u", "chat_kind": "dm"},
                            context=ctx)
    assert sink.flush(timeout=30)
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert [re.sub(r'^\{"ts":[0-9.]+,', "{", line) for line in lines] == [
        ANSWERED_LINE.removesuffix("}") + ',"run_id":null}',
        REFUSED_LINE.removesuffix("}") + ',"run_id":null}']


def test_the_contract_loads_without_langgraph() -> None:
    """`signal-rag audit` and traffic tools import it; only the standard library loads."""
    code = ("import sys, graph.contract, agent.audit_cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('langgraph', 'langchain_core', 'numpy', 'guards', 'knowledge')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
