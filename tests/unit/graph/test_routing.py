import pytest

from graph.routing import (
    RoutingError,
    route_after_generate,
    route_after_retrieve,
    route_after_sanitize,
    route_after_threat_check,
)


def test_sanitize_router():
    assert route_after_sanitize({"fallback_reason": None}) == "threat_check"
    assert route_after_sanitize({"fallback_reason": "too_long"}) == "fallback"


def test_threat_router():
    assert route_after_threat_check({"fallback_reason": None}) == "retrieve"
    assert route_after_threat_check({"fallback_reason": "threat"}) == "fallback"


def test_retrieve_router():
    passage = {"source": "a", "title": "A", "page": None, "text": "t", "similarity": 1.0}
    assert route_after_retrieve({"fallback_reason": None, "passages": [passage]}) == "generate"
    assert route_after_retrieve({"fallback_reason": "index_unavailable",
                                 "passages": []}) == "fallback"
    assert route_after_retrieve({"fallback_reason": None, "passages": []}) == "fallback"


def test_generate_router():
    assert route_after_generate({"fallback_reason": None, "reply": "x"}) == "output_guard"
    assert route_after_generate({"fallback_reason": "circuit_open"}) == "fallback"
    assert route_after_generate({"fallback_reason": "model_error"}) == "fallback"


@pytest.mark.parametrize("router", [route_after_sanitize, route_after_threat_check,
                                    route_after_retrieve, route_after_generate])
def test_routers_raise_on_unexpected_state(router):
    with pytest.raises(RoutingError):
        router({})
