"""Write a retrieval report as JSON, a Markdown table and a PNG bar chart."""

from __future__ import annotations

import json
from pathlib import Path

from evals.runner import RetrievalReport

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"


def markdown_table(report: RetrievalReport) -> str:
    k = report.k
    lines = [
        f"| retriever | nDCG@{k} | recall@{k} | recall@100 | MRR@{k} | p50 ms | p95 ms "
        "| search p50 ms | search p95 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report.results:
        lines.append(f"| {row.retriever} | {row.ndcg:.3f} | {row.recall:.3f} | "
                     f"{row.recall_100:.3f} | {row.mrr:.3f} | {row.latency_p50_ms:.1f} | "
                     f"{row.latency_p95_ms:.1f} | {row.search_p50_ms:.2f} | "
                     f"{row.search_p95_ms:.2f} |")
    return "\n".join(lines)


def markdown(report: RetrievalReport) -> str:
    chunking = ("whole documents" if report.chunk_size <= 0 else
                f"chunks of {report.chunk_size}/{report.chunk_overlap} characters, "
                "a chunk hit scored as its document")
    return (f"# Retrieval evaluation: {report.dataset} ({report.split})\n\n"
            f"{report.documents} documents ({chunking}), {report.queries} judged queries, "
            f"embedding model {report.embedding_model}; run took {report.seconds:.0f} s.\n\n"
            f"{markdown_table(report)}\n\n"
            "Latency is per query on this machine, including the query embedding for "
            "configurations that use the dense model; search latency leaves it out.\n")


def write_chart(report: RetrievalReport, path: Path) -> None:
    """One panel per metric, one horizontal bar per configuration: readable at 20 rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report.k
    names = [row.retriever for row in report.results]
    metrics = [(f"nDCG@{k}", [r.ndcg for r in report.results]),
               (f"recall@{k}", [r.recall for r in report.results]),
               ("recall@100", [r.recall_100 for r in report.results]),
               (f"MRR@{k}", [r.mrr for r in report.results])]
    height = 1.2 + 0.28 * len(names)
    fig, axes = plt.subplots(1, len(metrics), figsize=(14, height), sharey=True)
    positions = list(range(len(names)))[::-1]  # first configuration at the top
    for ax, (title, values) in zip(axes, metrics, strict=True):
        best = max(values) if values else 0.0
        colors = ["tab:green" if v == best else "tab:blue" for v in values]
        bars = ax.barh(positions, values, color=colors)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        ax.set_xlim(0, 1.15)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(positions, names, fontsize=8)
    fig.suptitle(f"{report.dataset}: {report.queries} queries, {report.documents} documents "
                 "(best per metric in green)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: RetrievalReport, out_dir: Path) -> list[Path]:
    """report.json (with per-query scores), report.md and report.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / REPORT_JSON, out_dir / REPORT_MD, out_dir / REPORT_PNG]
    paths[0].write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(report), encoding="utf-8")
    write_chart(report, paths[2])
    return paths
