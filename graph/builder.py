"""Assemble the StateGraph: seven nodes, routers for every way off the happy path.

The nodes are `graph.contract.NODES`, added in that order, each wrapped by
`nodes/traced.py` (span and latency). Every reply, answered or fallback, passes
`output_guard` on its way to `audit`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from graph.context import GraphContext
from graph.contract import FIRST_NODE, NODES, NodeName
from graph.nodes.audit import audit
from graph.nodes.fallback import fallback
from graph.nodes.generate import generate, should_retry
from graph.nodes.output_guard import output_guard
from graph.nodes.retrieve import retrieve
from graph.nodes.sanitize import sanitize
from graph.nodes.threat_check import threat_check
from graph.nodes.traced import AsyncNode, SyncNode, traced
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
        builder.add_node(name, traced(name, IMPLEMENTATIONS[name], timed=name not in UNTIMED),
                         retry_policy=(retry_policy or model_retry_policy())
                         if name == "generate" else None)

    builder.add_edge(START, FIRST_NODE)
    for source, router in ROUTERS.items():
        builder.add_conditional_edges(source, router)
    for source, target in EDGES:
        builder.add_edge(source, target)
    builder.add_edge(NODES[-1], END)
    return builder.compile(checkpointer=checkpointer, name="signal-rag")
