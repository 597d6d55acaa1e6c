"""SEC-5: a full graph run, output guard included, connects to no host but the configured
ones: no library of the run (the model runtime, OpenTelemetry, the HTTP clients) phones home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import ROOT


def test_full_graph_run_makes_no_non_loopback_connection(sample_data_dir: Path,
                                                         tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNAL_RAG_", "GUARD", "OTEL_")) and k != "OPENAI_API_KEY"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("no_network_run.py")),
         str(sample_data_dir / "index"), str(tmp_path / "data")],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["refused"] == [], f"non-loopback connections attempted: {result['refused']}"
    assert result["model_calls"] == 2, "the loopback model was really used"
    assert result["answered"] is None
    assert result["blocked"] == "output_blocked", "the output guard ran"
    assert result["routes"] == ["answered", "fallback:output_blocked"]
