"""A span around every node run (OBS-3), through the context's `Spans`: tracing stays an
application concern, and the graph code needs no tracing calls of its own."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from langgraph.runtime import Runtime

from graph.context import GraphContext, Span
from graph.state import GraphState

Node = TypeVar("Node", bound=Callable[..., Any])


def _describe(span: Span, update: Any) -> None:
    if isinstance(update, dict) and update.get("fallback_reason"):
        span.set("signal_rag.fallback_reason", str(update["fallback_reason"]))


def traced(name: str, node: Node) -> Node:
    """`node`, run inside a span `node <name>` (each retry attempt gets its own)."""
    attributes = {"langgraph.node": name}
    if inspect.iscoroutinefunction(node):
        async_node = cast(Callable[[GraphState, Runtime[GraphContext]], Awaitable[Any]], node)

        @functools.wraps(node)
        async def run_async(state: GraphState, runtime: Runtime[GraphContext]) -> Any:
            with runtime.context.spans.span(f"node {name}", attributes) as span:
                try:
                    update = await async_node(state, runtime)
                except BaseException as exc:
                    span.fail(exc)
                    raise
                _describe(span, update)
                return update

        return cast(Node, run_async)

    @functools.wraps(node)
    def run(state: GraphState, runtime: Runtime[GraphContext]) -> Any:
        with runtime.context.spans.span(f"node {name}", attributes) as span:
            try:
                update = node(state, runtime)
            except BaseException as exc:
                span.fail(exc)
                raise
            _describe(span, update)
            return update

    return cast(Node, run)
