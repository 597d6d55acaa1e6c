"""The runtime stays free of the training stack: importing every module `signal-rag serve`
can load (agent, graph, guards, knowledge) pulls in neither scikit-learn nor scipy.

The detector is trained with scikit-learn (`evals/detector/`, development only) and scored
from JSON weights at run time; a stray import would add ~100 MB and seconds of start-up to
the bot. Checked in a fresh interpreter, since this test process may already hold them.
`make lint` (import-linter) forbids the same imports statically, lazy ones included.
"""

from __future__ import annotations

import json
import subprocess
import sys

RUNTIME = ("agent", "graph", "guards", "knowledge")
TRAINING_ONLY = ("sklearn", "scipy")

_PROBE = """
import importlib, json, pkgutil, sys
for name in {packages!r}:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_runtime_modules_do_not_load_the_training_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(packages=RUNTIME)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "agent.serve" in loaded and "guards.learned" in loaded  # the walk reached them
    assert not [m for m in loaded if m.split(".")[0] in TRAINING_ONLY]
    assert not [m for m in loaded if m.startswith("evals.detector")]
