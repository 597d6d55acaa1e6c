"""The fine-tuned encoder's loader (guards/encoder.py): it scores only a model whose files
match their manifest, and every damaged, missing or malformed part is one clear
`DetectorUnavailableError` (fail closed). A tiny ONNX graph and a word-level tokenizer stand
in for the real model (the real one is built by `make encoder`), so these run anywhere."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from guards.encoder import (
    FORMAT,
    MANIFEST,
    MODEL_FILE,
    TOKENIZER_FILE,
    EncoderClassifier,
    default_encoder,
    read_manifest,
)
from guards.learned import DetectorUnavailableError

onnx = pytest.importorskip("onnx")


def _graph(inputs: tuple[str, ...] = ("input_ids", "attention_mask"),
           scale: float = 1.0) -> bytes:
    """logit = scale * (sum of the token ids - 50): the token "bad" (id 100) scores high."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", [inputs[0]], ["ids_f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["ids_f", "axes"], ["total"], keepdims=0),
             helper.make_node("Sub", ["total", "offset"], ["shifted"]),
             helper.make_node("Mul", ["shifted", "scale"], ["logit"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info(name, TensorProto.INT64, ["b", "t"])
                        for name in inputs],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["b"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("offset", TensorProto.FLOAT, [], [50.0]),
                     helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _tokenizer() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "good": 1, "bad": 100},
                                           unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return str(tokenizer.to_str())


def _write(model_dir: Path, graph: bytes | None = None, threshold: object = 0.5,
           **manifest: object) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MODEL_FILE).write_bytes(_graph() if graph is None else graph)
    (model_dir / TOKENIZER_FILE).write_text(_tokenizer(), encoding="utf-8")
    files = {name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
             for name in (MODEL_FILE, TOKENIZER_FILE)}
    document = {"format": FORMAT, "threshold": threshold, "max_tokens": 128, "files": files,
                **manifest}
    (model_dir / MANIFEST).write_text(json.dumps(document), encoding="utf-8")
    return model_dir


def test_a_verified_model_scores_and_blocks_at_its_threshold(tmp_path: Path):
    encoder = EncoderClassifier.load(_write(tmp_path / "m", threshold=0.9))
    assert encoder.threshold == pytest.approx(0.9)
    assert encoder.probability("bad") == pytest.approx(1.0, abs=1e-6)
    assert encoder.probability("good") == pytest.approx(0.0, abs=1e-6)
    assert encoder.blocks("bad") and not encoder.blocks("good")
    assert encoder.logit("bad good") == pytest.approx(51.0, abs=1e-4)


def test_long_messages_are_truncated_to_the_manifest_length(tmp_path: Path):
    encoder = EncoderClassifier.load(_write(tmp_path / "m"))
    # 200 tokens of "good" would sum to 200; truncation to 128 keeps the first 128.
    assert encoder.logit(" ".join(["good"] * 200)) == pytest.approx(128 - 50, abs=1e-3)


def test_missing_directory_is_one_clear_error(tmp_path: Path):
    with pytest.raises(DetectorUnavailableError, match=r"no manifest\.json.*make encoder"):
        EncoderClassifier.load(tmp_path / "absent")


@pytest.mark.parametrize("name", [MODEL_FILE, TOKENIZER_FILE])
def test_a_tampered_file_is_refused(tmp_path: Path, name: str):
    model_dir = _write(tmp_path / "m")
    with (model_dir / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(DetectorUnavailableError, match=f"{name} .* damaged"):
        EncoderClassifier.load(model_dir)


@pytest.mark.parametrize("name", [MODEL_FILE, TOKENIZER_FILE])
def test_a_missing_file_is_refused(tmp_path: Path, name: str):
    model_dir = _write(tmp_path / "m")
    (model_dir / name).unlink()
    with pytest.raises(DetectorUnavailableError, match=f"{name} .* missing"):
        EncoderClassifier.load(model_dir)


@pytest.mark.parametrize("change", [
    {"format": 99}, {"threshold": 1.5}, {"threshold": True}, {"threshold": "0.5"},
    {"max_tokens": 0}, {"max_tokens": 10_000}, {"files": {}},
    {"files": {MODEL_FILE: "0" * 64}}, {"files": {MODEL_FILE: "x", TOKENIZER_FILE: "y"}}])
def test_an_invalid_manifest_is_refused(tmp_path: Path, change: dict[str, object]):
    model_dir = _write(tmp_path / "m")
    document = json.loads((model_dir / MANIFEST).read_text()) | change
    (model_dir / MANIFEST).write_text(json.dumps(document))
    with pytest.raises(DetectorUnavailableError, match="invalid"):
        read_manifest(model_dir)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[]", b"null"])
def test_an_unreadable_manifest_is_refused(tmp_path: Path, raw: bytes):
    model_dir = _write(tmp_path / "m")
    (model_dir / MANIFEST).write_bytes(raw)
    with pytest.raises(DetectorUnavailableError, match="invalid"):
        read_manifest(model_dir)


def test_a_file_that_is_not_a_model_is_refused_even_with_a_matching_digest(tmp_path: Path):
    model_dir = _write(tmp_path / "m", graph=b"not an onnx model")
    with pytest.raises(DetectorUnavailableError, match="cannot load"):
        EncoderClassifier.load(model_dir)


def test_a_model_with_other_inputs_is_refused(tmp_path: Path):
    model_dir = _write(tmp_path / "m", graph=_graph(inputs=("input_ids",)))
    with pytest.raises(DetectorUnavailableError, match="unexpected inputs"):
        EncoderClassifier.load(model_dir)


def test_a_non_finite_score_fails_closed(tmp_path: Path):
    encoder = EncoderClassifier.load(_write(tmp_path / "m", graph=_graph(scale=float("nan"))))
    with pytest.raises(DetectorUnavailableError, match="non-finite"):
        encoder.blocks("good")


def test_hostile_text_is_scored_within_the_token_limit(tmp_path: Path):
    encoder = EncoderClassifier.load(_write(tmp_path / "m"))
    for text in ("", "\u2028\u2029\x00", "bad" * 10_000, "\ud7ff" * 5000, " ".join(["bad"] * 5000)):
        assert np.isfinite(encoder.probability(text))


def test_the_default_loader_fails_closed_and_is_cached(tmp_path: Path):
    default_encoder.cache_clear()
    try:
        with pytest.raises(DetectorUnavailableError):
            default_encoder(tmp_path / "absent")
        model_dir = _write(tmp_path / "m")
        assert default_encoder(model_dir) is default_encoder(model_dir)
    finally:
        default_encoder.cache_clear()


# the message check ---------------------------------------------------------------------

def test_the_message_check_blocks_what_the_encoder_flags(tmp_path: Path):
    from graph.nodes.threat_check import threat_check
    from tests.unit.graph.graph_helpers import context, runtime

    encoder = EncoderClassifier.load(_write(tmp_path / "m"))
    ctx = context(encoder=lambda: encoder)
    blocked = threat_check({"text": "bad"}, runtime(ctx))
    assert blocked["fallback_reason"] == "threat" and blocked["guard_rules"] == ["encoder"]
    assert threat_check({"text": "good"}, runtime(ctx))["fallback_reason"] is None


def test_the_message_check_refuses_when_the_encoder_is_missing(tmp_path: Path):
    from graph.nodes.threat_check import threat_check
    from tests.unit.graph.graph_helpers import context, runtime

    def load() -> EncoderClassifier:
        return EncoderClassifier.load(tmp_path / "absent")

    update = threat_check({"text": "good"}, runtime(context(encoder=load)))
    assert update["fallback_reason"] == "guard_error"
    assert update["error"] == "DetectorUnavailableError"


def test_the_encoder_is_off_unless_switched_on():
    from agent.settings import GuardsSettings

    assert GuardsSettings().encoder is False
    assert GuardsSettings(encoder=True).encoder is True
