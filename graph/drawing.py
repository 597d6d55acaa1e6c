"""Draw the compiled graph offline: Mermaid text, ASCII, PNG and SVG (GR-4).

LangChain renders PNG through a web service or a browser download, neither of which
works offline; here grandalf (the layout engine LangChain's ASCII drawing already uses)
places the nodes and matplotlib renders them, both from local wheels (matplotlib is the
`draw` extra: the bot never draws).
"""

from __future__ import annotations

import io
from typing import Any, Literal

from graph.contract import NODES

Format = Literal["mermaid", "ascii", "png", "svg"]


def draw(compiled: Any, fmt: Format) -> str | bytes:
    drawable = compiled.get_graph()
    if fmt == "mermaid":
        return str(drawable.draw_mermaid())
    if fmt == "ascii":
        return str(drawable.draw_ascii())
    return _render_image(drawable, fmt)


def _layout(drawable: Any) -> dict[str, tuple[float, float]]:
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    vertices = {node_id: Vertex(node_id) for node_id in drawable.nodes}
    for vertex in vertices.values():
        vertex.view = type("View", (), {"w": 150.0, "h": 40.0})()
    edges = [Edge(vertices[e.source], vertices[e.target]) for e in drawable.edges]
    graph = Graph(list(vertices.values()), edges)
    positions: dict[str, tuple[float, float]] = {}
    for component in graph.C:
        layout = SugiyamaLayout(component)
        layout.init_all(roots=[v for v in component.sV if not v.e_in()] or None)
        layout.draw()
        for vertex in component.sV:
            positions[vertex.data] = vertex.view.xy
    return positions


def _render_image(drawable: Any, fmt: Literal["png", "svg"]) -> bytes:
    from knowledge.extras import require

    require("draw", f"signal-rag graph --format {fmt}", "matplotlib")  # else MissingExtraError
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    positions = _layout(drawable)
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    width = max(xs) - min(xs) + 300
    height = max(ys) - min(ys) + 160
    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    ax.set_xlim(min(xs) - 150, max(xs) + 150)
    ax.set_ylim(max(ys) + 80, min(ys) - 80)  # top to bottom
    ax.axis("off")
    for edge in drawable.edges:
        (x1, y1), (x2, y2) = positions[edge.source], positions[edge.target]
        ax.add_patch(FancyArrowPatch(
            (x1, y1 + 20), (x2, y2 - 20), arrowstyle="-|>", mutation_scale=14,
            linestyle="--" if edge.conditional else "-", color="#444444",
            connectionstyle="arc3,rad=0.08"))
    for node_id, (x, y) in positions.items():
        special = node_id not in NODES  # LangGraph's __start__ and __end__
        ax.add_patch(FancyBboxPatch(
            (x - 70, y - 18), 140, 36, boxstyle="round,pad=2,rounding_size=12",
            facecolor="#ffffff" if special else "#f2f0ff", edgecolor="#6b5fd3"))
        ax.text(x, y, node_id, ha="center", va="center", fontsize=10, family="DejaVu Sans")
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buffer, format=fmt, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()
