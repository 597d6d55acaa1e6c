"""Assemble the StateGraph: seven nodes, routers for every way off the happy path.

The nodes are `graph.contract.NODES`, added in that order, each wrapped by
`nodes/traced.py` (span and latency). Every reply, answered or fallback, passes
`output_guard` on its way to `audit`.

The graph runs asynchronously (`ainvoke`, `astream`). Nodes and routers run on the event
loop, because the hop to LangGraph's thread pool costs more than their work (PERF-1);
a call that would block (`OFFLOAD`) runs on the pool instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, get_args, get_type_hints

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from graph.context import GraphContext
from graph.contract import FIRST_NODE, NODES, NodeName
from graph.nodes.audit import audit
from graph.nodes.fallback import fallback
from graph.nodes.generate import generate, should_retry
from graph.nodes.output_guard import output_guard, output_guard_loaded
from graph.nodes.retrieve import retrieve
from graph.nodes.sanitize import sanitize
from graph.nodes.threat_check import threat_check
from graph.nodes.traced import AsyncNode, Offload, SyncNode, traced
from graph.routing import (
    route_after_generate,
    route_after_retrieve,
    route_after_sanitize,
    route_after_threat_check,
)
from graph.state import GraphInput, GraphOutput, GraphState


def model_retry_policy(max_attempts: int = 3, initial_interval: float = 0.5,
                       max_interval: float = 8.0, *, jitter: bool = True) -> RetryPolicy:
    """Exponential backoff with jitter for the model call; pass the same `max_attempts`
    to `GraphContext` so the node knows its last attempt."""
    return RetryPolicy(initial_interval=initial_interval, backoff_factor=2.0,
                       max_interval=max_interval, max_attempts=max_attempts, jitter=jitter,
                       retry_on=should_retry)


IMPLEMENTATIONS: Final[Mapping[NodeName, SyncNode | AsyncNode]] = {
    "sanitize": sanitize, "threat_check": threat_check, "retrieve": retrieve,
    "generate": generate, "fallback": fallback, "output_guard": output_guard, "audit": audit}
"""The function behind each node name (tests/unit/graph/test_builder.py: one for every name)."""
UNTIMED: Final[frozenset[NodeName]] = frozenset({"audit"})
"""Nodes whose latency is not recorded: `audit` writes the run's timings before it ends."""
ROUTERS: Final[Mapping[NodeName, Callable[[GraphState], NodeName]]] = {
    "sanitize": route_after_sanitize, "threat_check": route_after_threat_check,
    "retrieve": route_after_retrieve, "generate": route_after_generate}
"""Where each node with a choice goes next (the routers' `Literal`s are node names)."""


def _embeds_or_runs_the_encoder(state: GraphState, ctx: GraphContext) -> bool:
    """The embedding head embeds the message; the fine-tuned encoder runs a model too."""
    return ctx.query_vector is not None or ctx.encoder is not None


def _embeds_the_question(state: GraphState, ctx: GraphContext) -> bool:
    """Retrieval embeds unless the threat check's embedding head already did (the
    knowledge base keeps that vector); a source that cannot say is assumed to embed."""
    has_vector = getattr(ctx.knowledge, "has_vector", None)
    return ctx.knowledge is not None and not (
        callable(has_vector) and has_vector(state.get("text", "")))


def _guard_loading(state: GraphState, ctx: GraphContext) -> bool:
    return not output_guard_loaded()


def _never(state: GraphState, ctx: GraphContext) -> bool:
    return False


OFFLOAD: Final[Mapping[NodeName, Offload]] = {
    "threat_check": _embeds_or_runs_the_encoder, "retrieve": _embeds_the_question,
    "output_guard": _guard_loading}
"""When a node's call would block the event loop, so it runs on LangGraph's thread pool
instead: the query embedding (once per message, by the threat check's embedding head or
else by retrieval), the fine-tuned injection encoder when it is on, and the output guard
until its library has loaded (the first replies after start-up wait for it). Every other
call is computation of well under a millisecond and runs on the loop; the audit sink only
queues the event (`graph.context.AuditSink`)."""
EDGES: Final[tuple[tuple[NodeName, NodeName], ...]] = (
    ("fallback", "output_guard"), ("output_guard", "audit"))
"""The fixed edges; the run starts at FIRST_NODE and ends after the last of NODES."""


def build_graph(*, retry_policy: RetryPolicy | None = None, checkpointer: Any = None,
                context_schema: type[GraphContext] = GraphContext,
                ) -> CompiledStateGraph[GraphState, GraphContext, GraphInput, GraphOutput]:
    """`context_schema`: a subclass whose fields all have defaults lets the LangGraph API
    build the context from a run's JSON (agent/studio.py)."""
    builder = StateGraph(GraphState, context_schema=context_schema, input_schema=GraphInput,
                         output_schema=GraphOutput)
    for name in NODES:
        builder.add_node(name, traced(name, IMPLEMENTATIONS[name], timed=name not in UNTIMED,
                                      offload=OFFLOAD.get(name, _never)),
                         retry_policy=(retry_policy or model_retry_policy())
                         if name == "generate" else None)

    builder.add_edge(START, FIRST_NODE)
    for source, router in ROUTERS.items():
        builder.add_conditional_edges(source, _on_loop(router), targets(router))
    for source, target in EDGES:
        builder.add_edge(source, target)
    builder.add_edge(NODES[-1], END)
    return builder.compile(checkpointer=checkpointer, name="signal-rag")


def targets(router: Callable[[GraphState], NodeName]) -> list[str]:
    """The nodes a router can return, read from its `Literal` return type."""
    return list(get_args(get_type_hints(router)["return"]))


def _on_loop(router: Callable[[GraphState], NodeName]
             ) -> Callable[[GraphState], Awaitable[NodeName]]:
    """The router as a coroutine function: LangGraph runs a sync router on its thread pool
    too, a hop that costs more than the router itself."""
    async def route(state: GraphState) -> NodeName:
        return router(state)

    route.__name__ = router.__name__
    return route
