"""Real parts shared by integration tests: the packaged model and the sample index.

The model loads once per session (about 10 s on 2 cores) and the bundled sample documents
are ingested once into a session temp folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.settings import Settings, load_settings
from agent.testing.openai_server import FakeOpenAIServer
from agent.testing.signal_daemon import FakeSignalDaemon, fake_signal_daemon
from knowledge.embeddings import LocalEmbedder
from knowledge.index import EmbeddingInfo, KnowledgeIndex, open_index
from knowledge.ingest import ingest
from tests.integration.redis_server import redis_server  # noqa: F401 - a shared fixture

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "knowledge"


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    embedder = LocalEmbedder()
    assert embedder.dimension == 384
    return embedder


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory,
                    local_embedder: LocalEmbedder) -> Path:
    data_dir = tmp_path_factory.mktemp("sample-data")
    report = ingest(EXAMPLES, data_dir / "index", local_embedder, provider="local")
    assert report.added == 5 and not report.errors
    return data_dir


@pytest.fixture(scope="session")
def sample_index(sample_data_dir: Path, local_embedder: LocalEmbedder) -> KnowledgeIndex:
    return open_index(sample_data_dir / "index",
                      EmbeddingInfo("local", local_embedder.model_name, 384))


@pytest.fixture
def settings_for(sample_data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Settings from a clean environment plus the given variables."""

    def make(**env: str) -> Settings:
        for name in list(os.environ):
            if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
                monkeypatch.delenv(name)
        monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(sample_data_dir / "index"))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return load_settings(tmp_path / "no-secrets")

    return make


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    """The loopback OpenAI-compatible server a `serve` process talks to (32-d embeddings)."""
    with FakeOpenAIServer(embedding_dim=32) as server:
        yield server


@pytest.fixture
def sim() -> Iterator[FakeSignalDaemon]:
    """The signal-cli daemon simulator over HTTP, as a `serve` process uses it."""
    with fake_signal_daemon(keepalive_interval=0.5, tcp=False) as daemon:
        yield daemon
