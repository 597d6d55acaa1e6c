"""Assemble the StateGraph: seven nodes, routers for every way off the happy path.

Every reply, answered or fallback, passes `output_guard` on its way to `audit`.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from graph.context import GraphContext
from graph.nodes.audit import audit
from graph.nodes.fallback import fallback
from graph.nodes.generate import generate, should_retry
from graph.nodes.output_guard import output_guard
from graph.nodes.retrieve import retrieve
from graph.nodes.sanitize import sanitize
from graph.nodes.threat_check import threat_check
from graph.nodes.traced import traced
from graph.routing import (
    route_after_generate,
    route_after_retrieve,
    route_after_sanitize,
    route_after_threat_check,
)
from graph.state import GraphInput, GraphOutput, GraphState

NODES = ("sanitize", "threat_check", "retrieve", "generate", "fallback", "output_guard",
         "audit")


def model_retry_policy(max_attempts: int = 3, initial_interval: float = 0.5,
                       max_interval: float = 8.0, *, jitter: bool = True) -> RetryPolicy:
    """Exponential backoff with jitter for the model call; pass the same `max_attempts`
    to `GraphContext` so the node knows its last attempt."""
    return RetryPolicy(initial_interval=initial_interval, backoff_factor=2.0,
                       max_interval=max_interval, max_attempts=max_attempts, jitter=jitter,
                       retry_on=should_retry)


def build_graph(*, retry_policy: RetryPolicy | None = None, checkpointer: Any = None,
                context_schema: type[GraphContext] = GraphContext,
                ) -> CompiledStateGraph[GraphState, GraphContext, GraphInput, GraphOutput]:
    """`context_schema`: a subclass whose fields all have defaults lets the LangGraph API
    build the context from a run's JSON (agent/studio.py)."""
    builder = StateGraph(GraphState, context_schema=context_schema, input_schema=GraphInput,
                         output_schema=GraphOutput)
    builder.add_node("sanitize", traced("sanitize", sanitize))
    builder.add_node("threat_check", traced("threat_check", threat_check))
    builder.add_node("retrieve", traced("retrieve", retrieve))
    builder.add_node("generate", traced("generate", generate),
                     retry_policy=retry_policy or model_retry_policy())
    builder.add_node("fallback", traced("fallback", fallback))
    builder.add_node("output_guard", traced("output_guard", output_guard))
    builder.add_node("audit", traced("audit", audit))

    builder.add_edge(START, "sanitize")
    builder.add_conditional_edges("sanitize", route_after_sanitize)
    builder.add_conditional_edges("threat_check", route_after_threat_check)
    builder.add_conditional_edges("retrieve", route_after_retrieve)
    builder.add_conditional_edges("generate", route_after_generate)
    builder.add_edge("fallback", "output_guard")
    builder.add_edge("output_guard", "audit")
    builder.add_edge("audit", END)
    return builder.compile(checkpointer=checkpointer, name="signal-rag")
