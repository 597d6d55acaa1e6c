"""Rewrite the generated Mermaid diagram in docs/architecture.md from the code.

Run `make graph-doc` after changing the graph; tests/unit/project/test_docs.py fails until the
diagram in the document matches what `signal-rag graph --format mermaid` prints. The node
table under the diagram is prose, but its rows must be the registry's nodes
(`graph.contract.NODES`), in order: this script says which are missing or extra.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from graph.builder import build_graph
from graph.contract import NODES
from graph.drawing import draw

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
BLOCK = re.compile(r"(<!-- graph:start -->\n```mermaid\n)(.*?)(```\n<!-- graph:end -->)", re.S)
TABLE_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.M)


def table_nodes(text: str) -> list[str]:
    """The node names in the first column of the table that follows the diagram."""
    tail = text.split("<!-- graph:end -->", 1)[-1]
    table = tail.split("\n\n", 2)[1] if tail.count("\n\n") >= 2 else ""
    return TABLE_ROW.findall(table)


def main() -> int:
    mermaid = str(draw(build_graph(), "mermaid")).rstrip("\n") + "\n"
    text = DOC.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        print(f"{DOC}: no <!-- graph:start --> block", file=sys.stderr)
        return 1
    DOC.write_text(BLOCK.sub(lambda m: m.group(1) + mermaid + m.group(3), text), encoding="utf-8")
    if table_nodes(text) != list(NODES):
        print(f"{DOC}: the node table lists {table_nodes(text)}, the graph has {list(NODES)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
