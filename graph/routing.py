"""Routers: pure functions of the state that pick the next node.

Each returns a `Literal` of node names and raises on a state it does not expect, so a
missing field is a loud bug rather than a silent wrong turn.
"""

from __future__ import annotations

from typing import Literal

from graph.state import GraphState


class RoutingError(RuntimeError):
    """The state has no field that a router needs: a bug in the node before it."""


def _require(state: GraphState, key: str, router: str) -> None:
    if key not in state:
        raise RoutingError(f"{router}: state has no {key!r}")


def route_after_sanitize(state: GraphState) -> Literal["threat_check", "fallback"]:
    _require(state, "fallback_reason", "route_after_sanitize")
    return "fallback" if state["fallback_reason"] else "threat_check"


def route_after_threat_check(state: GraphState) -> Literal["retrieve", "fallback"]:
    _require(state, "fallback_reason", "route_after_threat_check")
    return "fallback" if state["fallback_reason"] else "retrieve"


def route_after_retrieve(state: GraphState) -> Literal["generate", "fallback"]:
    _require(state, "fallback_reason", "route_after_retrieve")
    if state["fallback_reason"]:
        return "fallback"
    _require(state, "passages", "route_after_retrieve")
    return "generate" if state["passages"] else "fallback"


def route_after_generate(state: GraphState) -> Literal["output_guard", "fallback"]:
    _require(state, "fallback_reason", "route_after_generate")
    if state["fallback_reason"]:
        return "fallback"
    _require(state, "reply", "route_after_generate")
    return "output_guard"
