"""Rewrite the generated Mermaid diagram in docs/architecture.md from the code.

Run `make graph-doc` after changing the graph; tests/unit/test_docs.py fails until the
diagram in the document matches what `signal-rag graph --format mermaid` prints.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from graph.builder import build_graph
from graph.drawing import draw

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
BLOCK = re.compile(r"(<!-- graph:start -->\n```mermaid\n)(.*?)(```\n<!-- graph:end -->)", re.S)


def main() -> int:
    mermaid = str(draw(build_graph(), "mermaid")).rstrip("\n") + "\n"
    text = DOC.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        print(f"{DOC}: no <!-- graph:start --> block", file=sys.stderr)
        return 1
    DOC.write_text(BLOCK.sub(lambda m: m.group(1) + mermaid + m.group(3), text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
