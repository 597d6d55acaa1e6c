"""graph/nodes/traced.py: the wrapper times and traces every node, so nodes do neither."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest
from langgraph.runtime import Runtime

from graph.context import AttributeValue, GraphContext
from graph.nodes.traced import traced
from graph.state import GraphState
from tests.unit.graph.graph_helpers import context, runtime


class Clock:
    """Advances by `step` seconds on every reading: counts readings instead of timing."""

    def __init__(self, start: float = 100.0, step: float = 0.25) -> None:
        self.now, self.step, self.readings = start, step, 0

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        self.readings += 1
        return value


class RecordedSpan:
    def __init__(self, name: str, attributes: Mapping[str, AttributeValue]) -> None:
        self.name, self.attributes = name, dict(attributes)
        self.failed: BaseException | None = None

    def set(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def fail(self, error: BaseException) -> None:
        self.failed = error


class RecordingSpans:
    def __init__(self) -> None:
        self.spans: list[RecordedSpan] = []

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None
             ) -> Iterator[RecordedSpan]:
        span = RecordedSpan(name, attributes or {})
        self.spans.append(span)
        yield span


def _refuse(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    return {"fallback_reason": "threat", "guard_rules": ["r"]}


async def _answer(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    runtime.context.clock()  # work inside the node reads the clock too
    return {"reply": "ok"}


def test_a_sync_node_gets_its_latency_from_the_context_clock_and_a_span() -> None:
    clock, spans = Clock(), RecordingSpans()
    update = traced("threat_check", _refuse)({}, runtime(context(clock=clock, spans=spans)))
    assert update == {"fallback_reason": "threat", "guard_rules": ["r"],
                      "timings": {"threat_check": 250.0}}
    assert clock.readings == 2
    [span] = spans.spans
    assert span.name == "node threat_check" and span.failed is None
    assert span.attributes == {"langgraph.node": "threat_check",
                               "signal_rag.fallback_reason": "threat"}


async def test_an_async_node_is_timed_from_start_to_return() -> None:
    clock = Clock(step=0.5)
    node = traced("generate", _answer)
    update = await node({}, runtime(context(clock=clock)))
    assert update == {"reply": "ok", "timings": {"generate": 1000.0}}, "two steps of 0.5 s"


@pytest.mark.parametrize("blocks", [False, True])
async def test_a_node_with_offload_runs_on_the_loop_unless_the_call_would_block(
        blocks: bool) -> None:
    """PERF-1: no hop to the thread pool for a call that does not block; timed and traced
    like any node either way, and `offload` sees the state and the context."""
    threads: list[int] = []
    asked: list[tuple[GraphState, GraphContext]] = []

    def node(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
        threads.append(threading.get_ident())
        return {"reply": "ok"}

    def offload(state: GraphState, ctx: GraphContext) -> bool:
        asked.append((state, ctx))
        return blocks

    spans = RecordingSpans()
    ctx = context(clock=Clock(), spans=spans)
    wrapped = traced("sanitize", node, offload=offload)
    assert inspect.iscoroutinefunction(wrapped) and wrapped.__wrapped__ is node
    update = await wrapped({"text": "q"}, runtime(ctx))
    assert update == {"reply": "ok", "timings": {"sanitize": 250.0}}
    assert asked == [({"text": "q"}, ctx)]
    assert (threads[0] != threading.get_ident()) is blocks
    assert [span.name for span in spans.spans] == ["node sanitize"]


def test_an_untimed_node_reports_no_latency() -> None:
    clock = Clock()
    update = traced("audit", _refuse, timed=False)({}, runtime(context(clock=clock)))
    assert "timings" not in update


async def test_a_failing_attempt_fails_its_span_and_records_no_latency() -> None:
    spans = RecordingSpans()

    async def broken(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await traced("generate", broken)({}, runtime(context(spans=spans)))
    assert isinstance(spans.spans[0].failed, TimeoutError)


def test_nodes_do_not_time_themselves() -> None:
    """A node called bare returns no `timings`: one home for latency, the wrapper."""
    from graph.builder import IMPLEMENTATIONS

    update = IMPLEMENTATIONS["sanitize"]({"question": "hello"}, runtime())
    assert "timings" not in update
