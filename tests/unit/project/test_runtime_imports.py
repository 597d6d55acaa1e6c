"""The runtime stays free of the training stack: importing every module `signal-rag serve`
can load (agent, graph, guards, knowledge) pulls in neither scikit-learn nor scipy. And the
tools (benchmarks/, scripts/) do not import tests/.

The detector is trained with scikit-learn (`evals/detector/`, development only) and scored
from JSON weights at run time; a stray import would add ~100 MB and seconds of start-up to
the bot. Checked in a fresh interpreter, since this test process may already hold them.
`make lint` (import-linter) forbids the same imports statically, lazy ones included.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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


_BM25_PROBE = """
import importlib.util, json, sys
assert importlib.util.find_spec("scipy") is not None  # the dev extras: bm25s would import it
from knowledge.lexical import import_bm25s
bm25s = import_bm25s()
blocked = "scipy.sparse" not in sys.modules and not bm25s.SCIPY_AVAILABLE
import scipy.sparse  # still importable afterwards
print(json.dumps([blocked, scipy.sparse.__name__]))
"""


def test_bm25s_is_imported_without_scipy() -> None:
    """bm25s imports scipy when it is installed; `import_bm25s`, the package's only way in,
    keeps it out of the process (and out of `serve`) without hiding it from anyone else."""
    result = subprocess.run([sys.executable, "-c", _BM25_PROBE], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [True, "scipy.sparse"]


def test_benchmarks_and_scripts_do_not_import_the_tests() -> None:
    """Tools take their fakes from agent/testing/; tests/ is not part of what ships."""
    root = Path(__file__).resolve().parents[3]
    offending = []
    for path in sorted([*(root / "benchmarks").rglob("*.py"), *(root / "scripts").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offending += [f"{path.relative_to(root)}: {n}" for n in names
                          if n == "tests" or n.startswith("tests.")]
    assert not offending
