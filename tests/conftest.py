"""Shared fixtures: small document folders, a fake embedder, a built index."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.testing.embeddings import HashingEmbedder
from knowledge.ingest import ingest

pytest_plugins = ["tests.leak_check"]

DOCS = {
    "garden.md": "# Gardening notes\n\nTomatoes need full sun and regular watering. "
                 "Prune the side shoots of tomato plants every week.\n\n"
                 "Compost improves the soil and feeds the plants slowly.",
    "bikes.txt": "Bicycle maintenance. Oil the chain every 300 kilometres. "
                 "Check the tyre pressure before each ride; road tyres need about 6 bar.",
    "kitchen.html": "<html><head><title>Bread baking</title><style>.x{color:red}</style>"
                    "</head><body><h1>Bread</h1><p>Sourdough needs a <b>mature starter</b> "
                    "and a long, cool fermentation.</p><script>var secret = 1;</script>"
                    "<p>Bake the loaf at 230 degrees for 40 minutes.</p></body></html>",
}


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "index"


@pytest.fixture
def built_index(docs_dir: Path, index_dir: Path, embedder: HashingEmbedder) -> Path:
    ingest(docs_dir, index_dir, embedder, provider="test", chunk_size=200, chunk_overlap=40)
    return index_dir
