"""Draw the compiled graph offline: Mermaid text, ASCII, PNG and SVG (GR-4).

LangChain renders PNG through a web service or a browser download, neither of which
works offline; here grandalf (the layout engine LangChain's ASCII drawing already uses)
places the nodes and matplotlib renders them, both from local wheels (matplotlib is the
`draw` extra: the bot never draws).

An `Overlay` adds figures to the drawing (graph/traffic.py: runs per edge, latencies, one
run's path); its Mermaid is written here because LangChain's cannot style a single edge.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from graph.contract import NODES

Format = Literal["mermaid", "ascii", "png", "svg"]
Edge = tuple[str, str]
HIGHLIGHT = "#d1495b"


@dataclass(frozen=True, slots=True)
class Overlay:
    """Figures drawn on the graph; every text is ours (node names, numbers, reasons)."""

    title: str = ""
    node_notes: Mapping[str, str] = field(default_factory=dict)
    """Lines under a node's name."""
    edge_labels: Mapping[Edge, str] = field(default_factory=dict)
    edge_weights: Mapping[Edge, float] = field(default_factory=dict)
    """0..1, the line's width; an edge without weight is drawn faint (no traffic)."""
    highlight: frozenset[Edge] = frozenset()
    """One run's path."""


def draw(compiled: Any, fmt: Format, overlay: Overlay | None = None) -> str | bytes:
    drawable = compiled.get_graph()
    if fmt == "mermaid":
        return str(drawable.draw_mermaid()) if overlay is None else _mermaid(drawable, overlay)
    if fmt == "ascii":
        return str(drawable.draw_ascii())
    return _render_image(drawable, fmt, overlay)


def _mermaid_text(text: str) -> str:
    return "<br/>".join(text.replace('"', "#quot;").splitlines())


def _mermaid(drawable: Any, overlay: Overlay) -> str:
    lines = []
    if overlay.title:
        lines += ["---", f"title: {overlay.title.splitlines()[0]}", "---"]
    lines.append("graph TD;")
    for node_id in drawable.nodes:
        label = _mermaid_text("\n".join([node_id, overlay.node_notes.get(node_id, "")]).strip())
        shape = '("{}")' if node_id in NODES else '(["{}"])'  # __start__, __end__: stadium
        lines.append(f"\t{node_id}{shape.format(label)}")
    styles = []
    for index, edge in enumerate(drawable.edges):
        key = (edge.source, edge.target)
        arrow = "-.->" if edge.conditional else "-->"
        edge_label = overlay.edge_labels.get(key)
        text = f'|"{_mermaid_text(edge_label)}"|' if edge_label else ""
        lines.append(f"\t{edge.source} {arrow}{text} {edge.target};")
        if key in overlay.highlight:
            styles.append(f"\tlinkStyle {index} stroke:{HIGHLIGHT},stroke-width:4px;")
        elif not overlay.edge_weights.get(key):
            styles.append(f"\tlinkStyle {index} stroke:#bbbbbb;")
    lines += styles
    visited = sorted({node for edge in overlay.highlight for node in edge})
    lines.append("\tclassDef default fill:#f2f0ff,line-height:1.2")
    if visited:
        lines.append(f"\tclassDef run stroke:{HIGHLIGHT},stroke-width:3px")
        lines.append(f"\tclass {','.join(visited)} run")
    return "\n".join(lines) + "\n"


def _layout(drawable: Any, width: float = 150.0, height: float = 40.0,
            gap: float | None = None) -> dict[str, tuple[float, float]]:
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    vertices = {node_id: Vertex(node_id) for node_id in drawable.nodes}
    for vertex in vertices.values():
        vertex.view = type("View", (), {"w": width, "h": height})()
    edges = [Edge(vertices[e.source], vertices[e.target]) for e in drawable.edges]
    graph = Graph(list(vertices.values()), edges)
    positions: dict[str, tuple[float, float]] = {}
    for component in graph.C:
        layout = SugiyamaLayout(component)
        if gap is not None:
            layout.yspace = gap  # room between layers for the edge labels
        layout.init_all(roots=[v for v in component.sV if not v.e_in()] or None)
        layout.draw()
        for vertex in component.sV:
            positions[vertex.data] = vertex.view.xy
    return positions


def _render_image(drawable: Any, fmt: Literal["png", "svg"], overlay: Overlay | None = None
                  ) -> bytes:
    from knowledge.extras import require

    require("draw", f"signal-rag graph --format {fmt}", "matplotlib")  # else MissingExtraError
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    half_w, half_h = (70, 18) if overlay is None else (95, 34)
    positions = _layout(drawable, 2 * half_w + 40, 2 * half_h + 4, gap=60) \
        if overlay is not None else _layout(drawable)
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    width = max(xs) - min(xs) + 2 * half_w + 160
    height = max(ys) - min(ys) + 2 * half_h + 124
    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    ax.set_xlim(min(xs) - half_w - 80, max(xs) + half_w + 80)
    ax.set_ylim(max(ys) + half_h + 62, min(ys) - half_h - 62)  # top to bottom
    ax.axis("off")
    for edge in drawable.edges:
        key = (edge.source, edge.target)
        (x1, y1), (x2, y2) = positions[edge.source], positions[edge.target]
        color, width_pt = "#444444", 1.0
        if overlay is not None:
            weight = overlay.edge_weights.get(key, 0.0)
            color = HIGHLIGHT if key in overlay.highlight else "#444444" if weight \
                else "#bbbbbb"
            width_pt = 1.0 + 5.0 * weight + (1.5 if key in overlay.highlight else 0.0)
        ax.add_patch(FancyArrowPatch(
            (x1, y1 + half_h + 2), (x2, y2 - half_h - 2), arrowstyle="-|>",
            mutation_scale=14, linestyle="--" if edge.conditional else "-", color=color,
            linewidth=width_pt, connectionstyle="arc3,rad=0.08"))
        label = overlay.edge_labels.get(key) if overlay is not None else None
        if label:
            ax.text((x1 + x2) / 2, (y1 + y2) / 2, label, ha="center", va="center",
                    fontsize=7.5, family="DejaVu Sans", color=color if color != "#bbbbbb"
                    else "#888888", bbox={"boxstyle": "round,pad=0.2", "facecolor": "white",
                                          "edgecolor": "none", "alpha": 0.85})
    visited = {node for edge in overlay.highlight for node in edge} if overlay else set()
    for node_id, (x, y) in positions.items():
        special = node_id not in NODES  # LangGraph's __start__ and __end__
        on_path = node_id in visited
        ax.add_patch(FancyBboxPatch(
            (x - half_w, y - half_h), 2 * half_w, 2 * half_h,
            boxstyle="round,pad=2,rounding_size=12",
            facecolor="#ffffff" if special else "#f2f0ff",
            edgecolor=HIGHLIGHT if on_path else "#6b5fd3", linewidth=2.5 if on_path else 1.0))
        note = overlay.node_notes.get(node_id) if overlay is not None else None
        ax.text(x, y - (14 if note else 0), node_id, ha="center", va="center", fontsize=10,
                family="DejaVu Sans", weight="bold" if note else "normal")
        if note:
            ax.text(x, y + 10, note, ha="center", va="center", fontsize=7.5,
                    family="DejaVu Sans", color="#333333")
    if overlay is not None and overlay.title:
        ax.set_title(overlay.title, fontsize=9, family="DejaVu Sans", loc="left")
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buffer, format=fmt, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()
