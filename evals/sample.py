"""The bundled labelled set (EV-2): corpus built from examples/knowledge by our own loaders.

The corpus holds whole documents, `_id` = the path a citation shows (e.g. `faq.md`), so the
qrels judge documents and a chunk hit scores as its document. A test rebuilds the corpus
with `build_corpus` and compares, so a changed example document cannot leave a stale copy.
Regenerate with `python -m evals.sample`.
"""

from __future__ import annotations

import json
from pathlib import Path

from knowledge.documents import discover, load

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = Path(__file__).resolve().parent / "datasets" / "sample"
EXAMPLES = ROOT / "examples" / "knowledge"
BASELINE = SAMPLE_DIR / "baseline.json"
CHUNK_SIZE, CHUNK_OVERLAP = 1000, 200
"""The ingest defaults: the sample set is scored on the chunks the bot would search."""


def build_corpus(folder: Path = EXAMPLES) -> list[dict[str, str]]:
    """One row per document: id = path relative to `folder`, title, text of all pages."""
    rows = []
    for path in discover(folder):
        source = path.relative_to(folder).as_posix()
        pages = load(path, source)
        rows.append({"_id": source, "title": pages[0].title if pages else source,
                     "text": "\n\n".join(page.text for page in pages)})
    return rows


def corpus_jsonl(folder: Path = EXAMPLES) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in build_corpus(folder))


def main() -> None:
    (SAMPLE_DIR / "corpus.jsonl").write_text(corpus_jsonl(), encoding="utf-8")


if __name__ == "__main__":
    main()
