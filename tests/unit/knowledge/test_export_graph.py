"""The export's float16 weight storage: weight matrices become float16 initializers with a
Cast to float in front of their users, ONNX Runtime folds those casts when it loads the
model (so it computes in fp32 on fp32 constants), and the results equal those of the
float weights rounded to float16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import import_onnxruntime

onnx = pytest.importorskip("onnx")


def _matmul_model(path: Path, weights: np.ndarray, bias: np.ndarray) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _session(path: Path, optimised: Path | None = None) -> object:
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if optimised is not None:
        options.optimized_model_filepath = str(optimised)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_weight_matrices_are_stored_as_float16_and_folded_at_load(tmp_path: Path) -> None:
    from onnx import TensorProto

    from knowledge.export import _store_weights_as_float16

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 32)).astype(np.float32)
    bias = rng.normal(size=(32,)).astype(np.float32)
    path = tmp_path / "model.onnx"
    _matmul_model(path, weights, bias)
    before = path.stat().st_size
    _store_weights_as_float16(path)

    stored = onnx.load(str(path))
    types = {t.name: t.data_type for t in stored.graph.initializer}
    assert types == {"w.fp16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}  # bias stays
    assert [n.op_type for n in stored.graph.node] == ["Cast", "MatMul", "Add"]
    assert path.stat().st_size < before * 0.6

    x = rng.normal(size=(3, 64)).astype(np.float32)
    folded = tmp_path / "folded.onnx"
    session = _session(path, optimised=folded)
    (y,) = session.run(None, {"x": x})  # type: ignore[attr-defined]
    expected = x @ weights.astype(np.float16).astype(np.float32) + bias
    assert np.allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert "Cast" not in {n.op_type for n in onnx.load(str(folded)).graph.node}


def test_float16_storage_is_reproducible(tmp_path: Path) -> None:
    from knowledge.export import _store_weights_as_float16

    rng = np.random.default_rng(1)
    weights = rng.normal(size=(16, 8)).astype(np.float32)
    for name in ("a.onnx", "b.onnx"):
        _matmul_model(tmp_path / name, weights, np.zeros(8, np.float32))
        _store_weights_as_float16(tmp_path / name)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_weights_beyond_float16_stay_float(tmp_path: Path) -> None:
    from onnx import TensorProto

    from knowledge.export import _store_weights_as_float16

    weights = np.full((4, 4), 1e6, np.float32)
    path = tmp_path / "model.onnx"
    _matmul_model(path, weights, np.zeros(4, np.float32))
    _store_weights_as_float16(path)
    stored = onnx.load(str(path))
    assert {t.name: t.data_type for t in stored.graph.initializer}["w"] == TensorProto.FLOAT
    assert "Cast" not in {n.op_type for n in stored.graph.node}
