"""The fine-tuned encoder layer of SEC-2: a small MiniLM classifier run with ONNX Runtime.

Built by `python -m evals.detector.encoder build` (torch; `make encoder`, not part of
`make install`) from the packaged all-MiniLM-L6-v2 base and the corpus in guards/data/; it
reads whole sentences in context, which neither the n-gram model (spelling) nor the head on
the frozen sentence vector catches when an attack has no trigger words. Run here with ONNX
Runtime and the `tokenizers` library only, on one thread, one message at a time.

Fails closed: a missing directory, a manifest that does not parse, a file whose sha256 does
not match the manifest, or a model that does not load raises `DetectorUnavailableError` with
one line naming the directory and how to rebuild it; the message check then refuses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guards.learned import DetectorUnavailableError

FORMAT = 1
MANIFEST = "manifest.json"
MODEL_FILE = "encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENS = 128
"""Tokens read per message (the start of longer messages)."""
ENCODER_RULE = "encoder"
"""Rule name in verdicts and the audit when the encoder blocks a message."""
REBUILD = "build it with `make encoder` (python -m evals.detector.encoder build)"


def import_onnxruntime() -> Any:
    """ONNX Runtime with its telemetry off (SEC-5), as `knowledge.embeddings` does it (this
    layer may not import that one): the runtime reads the switch once, at its first import,
    and this may be the first import in a process whose embeddings come from an endpoint."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime

    return onnxruntime


def default_encoder_dir() -> Path:
    """Inside the Python environment, beside the exported embedding model."""
    return Path(sys.prefix) / "share" / "signal-rag" / "models" / "injection-encoder"


@dataclass(frozen=True, slots=True)
class EncoderManifest:
    threshold: float
    files: dict[str, str]
    max_tokens: int

    @classmethod
    def parse(cls, data: Any) -> EncoderManifest:
        """Validate the manifest (raises ValueError naming the first problem)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not an encoder manifest of format {FORMAT}")
        files = data.get("files")
        if not isinstance(files, dict) or set(files) != {MODEL_FILE, TOKENIZER_FILE} or \
                not all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
                        for v in files.values()):
            raise ValueError(f"'files' must give the sha256 of {MODEL_FILE} and "
                             f"{TOKENIZER_FILE}")
        threshold = data.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or \
                not 0.0 < float(threshold) < 1.0:
            raise ValueError("threshold must be a number in (0, 1)")
        tokens = data.get("max_tokens")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 < tokens <= 512:
            raise ValueError("max_tokens must be an integer in 1..512")
        return cls(threshold=float(threshold), files=dict(files), max_tokens=tokens)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_manifest(model_dir: Path) -> EncoderManifest:
    """The manifest, once both files are there with their sha256."""
    path = model_dir / MANIFEST
    try:
        manifest = EncoderManifest.parse(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DetectorUnavailableError(
            f"injection encoder: no {MANIFEST} in {model_dir}; {REBUILD}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise DetectorUnavailableError(
            f"injection encoder: {path} is invalid ({type(exc).__name__}: {exc}); "
            f"{REBUILD}") from None
    for name, expected in sorted(manifest.files.items()):
        try:
            digest = _sha256(model_dir / name)
        except OSError as exc:
            raise DetectorUnavailableError(
                f"injection encoder: {name} in {model_dir} is missing or unreadable "
                f"({type(exc).__name__}); {REBUILD}") from None
        if digest != expected:
            raise DetectorUnavailableError(
                f"injection encoder: {name} in {model_dir} is damaged (sha256 does not match "
                f"{MANIFEST}); {REBUILD}")
    return manifest


@dataclass(frozen=True, slots=True)
class EncoderClassifier:
    threshold: float
    """Probability at or above which the encoder blocks a user message."""
    session: Any
    tokenizer: Any

    @classmethod
    def load(cls, model_dir: Path) -> EncoderClassifier:
        manifest = read_manifest(model_dir)
        onnxruntime = import_onnxruntime()
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=manifest.max_tokens)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(str(model_dir / MODEL_FILE), options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime/tokenizers: their own base types
            raise DetectorUnavailableError(
                f"injection encoder: cannot load the model in {model_dir} "
                f"({type(exc).__name__}); {REBUILD}") from None
        names = {i.name for i in session.get_inputs()}
        if names != {"input_ids", "attention_mask"}:
            raise DetectorUnavailableError(
                f"injection encoder: the model in {model_dir} has unexpected inputs; {REBUILD}")
        return cls(threshold=manifest.threshold, session=session, tokenizer=tokenizer)

    def logit(self, text: str) -> float:
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        try:
            out = self.session.run(None, {"input_ids": ids,
                                          "attention_mask": np.ones_like(ids)})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
            raise DetectorUnavailableError(
                f"injection encoder failed ({type(exc).__name__})") from None
        value = float(np.asarray(out).ravel()[0])
        if not math.isfinite(value):
            raise DetectorUnavailableError("injection encoder returned a non-finite score")
        return value

    def probability(self, text: str) -> float:
        z = self.logit(text)
        return 1.0 / (1.0 + math.exp(-z)) if z >= -500 else 0.0

    def blocks(self, text: str) -> bool:
        return self.probability(text) >= self.threshold


@functools.cache
def default_encoder(model_dir: Path | None = None) -> EncoderClassifier:
    """Load the installed encoder once, on first use (never at import time)."""
    return EncoderClassifier.load(default_encoder_dir() if model_dir is None else model_dir)
