"""The wrapper every node runs in: a span (OBS-3) through the context's `Spans`, and the
node's latency in the state's `timings`, measured with the context's clock so tests can
fix time. Tracing and timing stay out of the node functions themselves.

Where a node runs (PERF-1): LangGraph runs a sync node on its thread pool, and that hop
(a queue, a thread wake-up, a call back into the loop) costs more than most nodes' work,
several milliseconds on a loaded machine. `traced(..., offload=...)` turns a sync node
into a coroutine that runs on the event loop, with no hop, unless `offload` says that
this call would block (it embeds, or waits for a library to load): then it runs on the
loop's default executor, LangGraph's pool, as LangGraph would have run it."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, cast, overload

from langgraph.runtime import Runtime

from graph.context import GraphContext, Span
from graph.contract import NodeName
from graph.state import GraphState


class SyncNode(Protocol):
    """A node: the state and the runtime in, a partial update of the state out."""

    def __call__(self, state: GraphState, runtime: Runtime[GraphContext]) -> GraphState: ...


class AsyncNode(Protocol):
    def __call__(self, state: GraphState, runtime: Runtime[GraphContext]
                 ) -> Awaitable[GraphState]: ...


Offload = Callable[[GraphState, GraphContext], bool]
"""Whether a node's call would block the event loop (then it runs on the thread pool)."""
Stopwatch = Callable[[], dict[str, float]]
"""Called when the node returned: its `timings` entry."""


def _stopwatch(name: NodeName, clock: Callable[[], float]) -> Stopwatch:
    started = clock()
    return lambda: {name: round((clock() - started) * 1000.0, 3)}


def _finish(update: GraphState, span: Span, stopwatch: Stopwatch | None) -> GraphState:
    reason = update.get("fallback_reason")
    if reason:
        span.set("signal_rag.fallback_reason", str(reason))
    return update if stopwatch is None else {**update, "timings": stopwatch()}


@overload
def traced(name: NodeName, node: AsyncNode, *, timed: bool = True,
           offload: Offload | None = None) -> AsyncNode: ...


@overload
def traced(name: NodeName, node: SyncNode, *, timed: bool = True,
           offload: None = None) -> SyncNode: ...


@overload
def traced(name: NodeName, node: SyncNode | AsyncNode, *, timed: bool = True,
           offload: Offload | None = None) -> SyncNode | AsyncNode: ...


def traced(name: NodeName, node: SyncNode | AsyncNode, *, timed: bool = True,
           offload: Offload | None = None) -> SyncNode | AsyncNode:
    """`node`, run inside a span `node <name>` (each retry attempt gets its own); with
    `timed`, its update also carries `timings[name]` in milliseconds. An attempt that
    raises records no latency (the retry that follows records its own). With `offload`,
    a sync `node` is returned as a coroutine function that calls it on the event loop, or
    on the loop's default executor when `offload(state, context)` is true."""
    attributes = {"langgraph.node": name}
    if offload is not None and not inspect.iscoroutinefunction(node):
        blocking = traced(name, cast(SyncNode, node), timed=timed)

        @functools.wraps(node)
        async def run_on_loop(state: GraphState, runtime: Runtime[GraphContext]
                              ) -> GraphState:
            if offload(state, runtime.context):  # the thread sees the caller's context
                return await asyncio.get_running_loop().run_in_executor(
                    None, contextvars.copy_context().run, blocking, state, runtime)
            return blocking(state, runtime)

        return run_on_loop
    if inspect.iscoroutinefunction(node):
        async_node = cast(AsyncNode, node)

        @functools.wraps(node)
        async def run_async(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
            ctx = runtime.context
            with ctx.spans.span(f"node {name}", attributes) as span:
                stopwatch = _stopwatch(name, ctx.clock) if timed else None
                try:
                    update = await async_node(state, runtime)
                except BaseException as exc:
                    span.fail(exc)
                    raise
                return _finish(update, span, stopwatch)

        return run_async

    sync_node = cast(SyncNode, node)

    @functools.wraps(node)
    def run(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
        ctx = runtime.context
        with ctx.spans.span(f"node {name}", attributes) as span:
            stopwatch = _stopwatch(name, ctx.clock) if timed else None
            try:
                update = sync_node(state, runtime)
            except BaseException as exc:
                span.fail(exc)
                raise
            return _finish(update, span, stopwatch)

    return run
