"""The embedding head: plain-JSON weights, exact scoring, refusing anything damaged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from guards.learned import DetectorUnavailableError
from guards.semantic import DEFAULT_HEAD, MODEL, SemanticHead, default_head, load_head, parse_head


def doc(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"format": 1, "model": MODEL, "dimension": 3,
                               "weights": [1.0, -2.0, 0.5], "intercept": -0.25,
                               "threshold": 0.7, "passage_threshold": 0.9}
    return base | overrides


def test_probability_is_the_logistic_of_the_dot_product():
    head = parse_head(doc())
    vector = np.array([0.2, 0.1, 0.4], dtype=np.float32)
    z = 0.2 - 0.2 + 0.2 - 0.25
    assert head.probability(vector) == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-9)
    assert head.probability(vector.reshape(1, 3)) == pytest.approx(head.probability(vector))


def test_message_and_passage_thresholds_apply_separately():
    head = SemanticHead(MODEL, np.array([10.0]), 0.0, threshold=0.7, passage_threshold=0.99)
    assert head.blocks([0.1], "message")  # p = 0.73
    assert not head.blocks([0.1], "passage")


def test_round_trip_through_json_keeps_the_scores():
    head = parse_head(doc())
    again = parse_head(json.loads(json.dumps(head.to_json())))
    vector = [0.3, -0.2, 0.9]
    assert again.probability(vector) == pytest.approx(head.probability(vector), rel=1e-6)


@pytest.mark.parametrize("bad", [
    doc(format=2), doc(weights=[]), doc(dimension=4), doc(weights=[1.0, "x", 0.5]),
    doc(weights=[1.0, float("nan"), 0.5]), doc(threshold=1.5), doc(passage_threshold=0),
    doc(intercept=True), doc(model=""), ["not", "an", "object"],
])
def test_damaged_heads_are_refused(bad: object):
    with pytest.raises(DetectorUnavailableError):
        parse_head(bad)


def test_missing_or_invalid_file_fails_closed(tmp_path: Path):
    with pytest.raises(DetectorUnavailableError, match="not readable"):
        load_head(tmp_path / "absent.json")
    broken = tmp_path / "semantic.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(DetectorUnavailableError, match="not valid JSON"):
        load_head(broken)


def test_shipped_head_loads_and_fits_the_embedding():
    head = default_head(DEFAULT_HEAD)
    assert head.model == MODEL
    assert head.weights.shape == (384,)
    assert 0.5 <= head.threshold <= head.passage_threshold < 1.0
