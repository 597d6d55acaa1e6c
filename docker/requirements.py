"""Print the image's pip requirements from pyproject.toml, one per line.

    python docker/requirements.py runtime  # [project] dependencies: what the bot runs
    python docker/requirements.py export   # the `export` extra (CPU torch first)

docker/Dockerfile builds wheels of the runtime list before it copies the code, so the
dependency layer is rebuilt only when pyproject.toml changes, and installs the export list
in its export stage only. pyproject.toml stays the single list of versions.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if match is None:
        raise ValueError(f"unparsable requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def requirements(variant: str, pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    if variant == "runtime":
        return list(project["dependencies"])
    if variant == "export":
        extra: list[str] = project["optional-dependencies"]["export"]
        return sorted(extra, key=lambda d: _name(d) != "torch")
    raise ValueError(f"variant must be runtime or export, got {variant!r}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: requirements.py runtime|export")
    print("\n".join(requirements(sys.argv[1])))
