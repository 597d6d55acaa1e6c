"""graph/contract.py: routes round-trip, the run event's keys are the audit node's, and the
alert names the graph raises are in the operator catalogue."""

from __future__ import annotations

from typing import get_type_hints

import pytest

from agent.observability.alerts import CONDITIONS
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
