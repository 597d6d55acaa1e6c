"""Traffic on the graph, read from the audit trail: runs along each edge, the share of each
fallback reason, p50/p95 latency per node, and the path one run took (issue 16).

A run event (`graph.contract.RunEvent`, read back from disk, so checked field by field)
carries the route and the latency of every node that ran; every node but `audit` records
its time, and `audit` emits the event. The graph is acyclic, so those nodes in topological
order, between START and END, are the path of the run. An event whose path is not a walk
along the graph's edges (an older graph, a damaged or forged line) is counted as off the
graph and drawn nowhere. No message content is read: the events carry none, and only node
names of this graph, numbers and the contract's fallback reasons reach a drawing.

Why our own code: the counting is a few dictionaries; the drawing is graph/drawing.py's
with an `Overlay`.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from itertools import pairwise
from typing import Any, Final

from graph.contract import ANSWERED, RUN_EVENT, NodeName, reason_of
from graph.drawing import Edge, Overlay

START, END = "__start__", "__end__"
AUDIT_NODE: Final[NodeName] = "audit"
"""Emits the event, so it ran, but its own time is not in the event."""
OTHER_REASON = "other"
"""A route that is not one of the contract's (missing, forged, from another version) is
counted under this name, never printed."""


class RunIdError(ValueError):
    """A `--run` value that is not a run id (32 hex digits, dashes allowed)."""


def normalise_run_id(value: str) -> str:
    """`4bf92f35-77b3-...` or `4BF92F3577B3...` → 32 lower-case hex digits."""
    try:
        return uuid.UUID(value.strip()).hex
    except ValueError:
        raise RunIdError(f"not a run id (32 hex digits, as in the audit trail's run_id): "
                         f"{value[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class Shape:
    """The nodes and edges of a compiled graph, in topological order."""

    nodes: tuple[str, ...]
    edges: frozenset[Edge]

    @classmethod
    def of(cls, compiled: Any) -> Shape:
        drawable = compiled.get_graph()
        edges = frozenset((e.source, e.target) for e in drawable.edges)
        sorter: TopologicalSorter[str] = TopologicalSorter({n: set() for n in drawable.nodes})
        for source, target in edges:
            sorter.add(target, source)
        return cls(tuple(sorter.static_order()), edges)


@dataclass(frozen=True, slots=True)
class RunPath:
    """One run: its id, route, the nodes it passed from START to END, their latencies."""

    run_id: str | None
    ts: float | None
    route: str
    nodes: tuple[str, ...]
    timings_ms: Mapping[str, float]

    @property
    def edges(self) -> list[Edge]:
        return list(pairwise(self.nodes))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fallback_reason(route: object) -> str | None:
    """`fallback:no_context` → `no_context`; None for `answered`; `other` for anything that
    is not a route."""
    if route == ANSWERED:
        return None
    try:
        reason = reason_of(route) if isinstance(route, str) else OTHER_REASON
    except ValueError:
        reason = OTHER_REASON
    return reason or OTHER_REASON


def run_path(event: Mapping[str, Any], shape: Shape) -> RunPath | None:
    """The path of one `graph_run` event, or None when it is not a walk along `shape`."""
    timings = event.get("timings_ms")
    if not isinstance(timings, Mapping):
        return None
    inner = set(shape.nodes) - {START, END, AUDIT_NODE}
    clean: dict[str, float] = {}
    for node, value in timings.items():
        ms = _number(value)
        if node not in inner or ms is None or ms < 0:
            return None
        clean[node] = ms
    ran = {*clean, AUDIT_NODE}
    nodes = (START, *(n for n in shape.nodes if n in ran), END)
    if any(edge not in shape.edges for edge in pairwise(nodes)):
        return None
    raw_id = event.get("run_id")
    run_id = None
    if isinstance(raw_id, str):
        try:
            run_id = normalise_run_id(raw_id)
        except RunIdError:
            run_id = None
    reason = fallback_reason(event.get("route"))
    return RunPath(run_id=run_id, ts=_number(event.get("ts")),
                   route=ANSWERED if reason is None else f"fallback:{reason}",
                   nodes=nodes, timings_ms=clean)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank, as `signal-rag audit stats` reports it: every value shown occurred."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@dataclass(slots=True)
class Traffic:
    """What the runs of a window did on the graph."""

    shape: Shape
    runs: int = 0
    edge_runs: Counter[Edge] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    """Runs per fallback reason (routes `fallback:<reason>`)."""
    reasons_by_edge: dict[Edge, Counter[str]] = field(default_factory=dict)
    """For the edges into `fallback`: which reasons sent runs along them."""
    latencies: dict[str, list[float]] = field(default_factory=dict)
    off_graph: int = 0
    """`graph_run` events whose path is not on this graph (older graph, damaged line)."""

    def add(self, path: RunPath) -> None:
        self.runs += 1
        self.edge_runs.update(path.edges)
        reason = fallback_reason(path.route)
        if reason is not None:
            self.reasons[reason] += 1
            for edge in path.edges:
                if edge[1] == "fallback":
                    self.reasons_by_edge.setdefault(edge, Counter())[reason] += 1
        for node, ms in path.timings_ms.items():
            self.latencies.setdefault(node, []).append(ms)

    def latency(self, node: str) -> tuple[float, float] | None:
        """(p50, p95) in ms, None when the node did not run."""
        values = self.latencies.get(node, [])
        p50, p95 = percentile(values, 50), percentile(values, 95)
        return None if p50 is None or p95 is None else (p50, p95)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "off_graph": self.off_graph,
            "edges": [{"from": s, "to": t, "runs": self.edge_runs[(s, t)]}
                      for s, t in sorted(self.shape.edges, key=self._edge_order)],
            "fallback_reasons": {reason: {"runs": n, "share": round(n / self.runs, 4)}
                                 for reason, n in self.reasons.most_common()},
            "latency_ms": {node: {"p50": pq[0], "p95": pq[1], "runs": len(self.latencies[node])}
                           for node in self.shape.nodes if (pq := self.latency(node))},
        }

    def _edge_order(self, edge: Edge) -> tuple[int, int]:
        index = {node: i for i, node in enumerate(self.shape.nodes)}
        return index[edge[0]], index[edge[1]]


def is_graph_run(event: Mapping[str, Any]) -> bool:
    return bool(event.get("event", RUN_EVENT) == RUN_EVENT)


def collect(events: Iterable[Mapping[str, Any]], shape: Shape, *, since: float | None = None
            ) -> Traffic:
    """The traffic of the `graph_run` events at or after `since` (a Unix time; events
    without a usable `ts` are left out then: their age is unknown)."""
    traffic = Traffic(shape)
    for event in events:
        if not is_graph_run(event):
            continue
        path = run_path(event, shape)
        if path is None:
            traffic.off_graph += 1
            continue
        if since is not None and (path.ts is None or path.ts < since):
            continue
        traffic.add(path)
    return traffic


def find_run(events: Iterable[Mapping[str, Any]], shape: Shape, run_id: str
             ) -> tuple[RunPath | None, int]:
    """The last run with `run_id` and how many runs carry it (a message retried after a
    crash is run again within the same trace)."""
    wanted = normalise_run_id(run_id)
    found: RunPath | None = None
    count = 0
    for event in events:
        if not is_graph_run(event):
            continue
        path = run_path(event, shape)
        if path is not None and path.run_id == wanted:
            found, count = path, count + 1
    return found, count


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def overlay(traffic: Traffic, *, run: RunPath | None = None, window: str = "") -> Overlay:
    """The figures to draw: runs per edge, fallback reasons on the edges into `fallback`,
    p50/p95 under each node; with `run`, its path and its time per node highlighted."""
    total = traffic.runs
    busiest = max(traffic.edge_runs.values(), default=0)
    notes: dict[str, str] = {}
    for node in traffic.shape.nodes:
        lines = []
        pq = traffic.latency(node)
        if pq is not None:
            lines.append(f"p50 {_ms(pq[0])} · p95 {_ms(pq[1])}")
        if run is not None and node in run.timings_ms:
            lines.append(f"this run: {_ms(run.timings_ms[node])}")
        if lines:
            notes[node] = "\n".join(lines)
    labels: dict[Edge, str] = {}
    for edge in traffic.shape.edges:
        runs = traffic.edge_runs[edge]
        label = f"{runs} ({_share(runs, total)})"
        reasons = traffic.reasons_by_edge.get(edge)
        if reasons:
            label += "\n" + ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        labels[edge] = label
    summary = [f"{total} runs" + (f" in the last {window}" if window else "")]
    if total:
        answered = total - sum(traffic.reasons.values())
        summary.append(f"answered {_share(answered, total)}")
        summary += [f"{reason} {_share(n, total)}" for reason, n in traffic.reasons.most_common()]
    title = " · ".join(summary)
    if run is not None:
        title += f"\nrun {run.run_id}: {run.route}, {_ms(sum(run.timings_ms.values()))}"
    return Overlay(title=title, node_notes=notes, edge_labels=labels,
                   edge_weights={e: (n / busiest if busiest else 0.0)
                                 for e, n in traffic.edge_runs.items()},
                   highlight=frozenset(run.edges) if run is not None else frozenset())


def table(traffic: Traffic, *, run: RunPath | None = None) -> str:
    """The same figures as plain text (the terminal's `--format ascii`)."""
    lines = [f"runs: {traffic.runs}" + (f" ({traffic.off_graph} events off the graph)"
                                         if traffic.off_graph else "")]
    lines.append("edges:")
    for source, target in sorted(traffic.shape.edges, key=traffic._edge_order):
        runs = traffic.edge_runs[(source, target)]
        mark = "  *" if run is not None and (source, target) in run.edges else ""
        lines.append(f"  {source:>14} -> {target:<14} {runs:>8} {_share(runs, traffic.runs):>5}"
                     f"{mark}")
    if traffic.reasons:
        lines.append("fallback reasons:")
        lines += [f"  {reason:<28} {n:>8} {_share(n, traffic.runs):>5}"
                  for reason, n in traffic.reasons.most_common()]
    lines.append("latency per node (p50 / p95):")
    for node in traffic.shape.nodes:
        pq = traffic.latency(node)
        if pq is not None:
            this = (f"   this run {_ms(run.timings_ms[node])}"
                    if run is not None and node in run.timings_ms else "")
            lines.append(f"  {node:<14} {_ms(pq[0]):>10} {_ms(pq[1]):>10}{this}")
    if run is not None:
        lines.append(f"run {run.run_id}: {run.route}, path {' -> '.join(run.nodes)}")
    return "\n".join(lines)
