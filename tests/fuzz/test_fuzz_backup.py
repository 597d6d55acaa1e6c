"""Fuzzing `signal-rag backup verify|restore` with hostile archives: random bytes, random
gzip, and tar archives built from a pool of dangerous names, member types, lying sizes and
mutated manifests. Whatever the archive: a BackupError (exit 3, one line, no control
characters), or a restore that wrote exactly what its verified manifest lists; never a
traceback, and never a byte outside the target directories."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.backup import BackupError, restore_backup, verify_backup
from agent.cli import app
from tests.fuzz import fuzz
from tests.unit.agent.test_backup import _entry, _file, _manifest, _special, write_tar

runner = CliRunner()

NAMES = ["data/audit.jsonl", "data/users.sqlite3", "data/sub/x", "data/sub", "index/meta.json",
         "index.last-good/meta.json", "config/settings.env", "signal-cli/data/acc",
         "data/../../evil", "/tmp/evil-fuzz", "../evil", "data/./x", "data//x", "etc/passwd",
         "data/.audit-pepper", "data/\x1b[2Jx", "data/a\\b", "data", "index", ""]
KINDS = [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
         tarfile.FIFOTYPE, tarfile.CHRTYPE]


@st.composite
def members(draw: st.DrawFn) -> list[tuple[tarfile.TarInfo, bytes, bool]]:
    """(member, data, listed in the manifest) triples."""
    out = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES) | st.text(max_size=12).map(lambda t: "data/" + t))
        kind = draw(st.sampled_from(KINDS))
        data = draw(st.binary(max_size=30))
        if kind == tarfile.REGTYPE:
            info, data = _file(name, data)
        else:
            info, data = _special(name, kind, draw(st.sampled_from(
                ["/etc/passwd", "data/audit.jsonl", "../x", ""])))
        out.append((info, data, draw(st.booleans())))
    return out


def _mutate(document: dict[str, Any], draw: st.DrawFn) -> dict[str, Any] | bytes:
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return document
    if choice == 1:  # deeply nested JSON
        return b'{"format":' + b"[" * draw(st.integers(100, 20_000))
    if choice == 2:
        return draw(st.binary(max_size=40))
    key = draw(st.sampled_from(sorted(document)))
    document[key] = draw(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                         | st.sampled_from(["\x1b]0;owned\x07", "2026\r\nforged line"])
                         | st.lists(st.text(max_size=10), max_size=3)
                         | st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
    return document


@st.composite
def archives(draw: st.DrawFn) -> tuple[str, Any, Any]:
    kind = draw(st.sampled_from(["bytes", "gzip", "tar", "tar", "tar"]))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=200)), None
    if kind == "gzip":
        return kind, gzip.compress(draw(st.binary(max_size=600))), None
    items = draw(members())
    files = [_entry(info.name, data) for info, data, listed in items if listed and info.isreg()]
    dirs = [info.name for info, _, listed in items if listed and info.isdir()]
    manifest = _mutate(_manifest(files, dirs=dirs), draw)
    if draw(st.booleans()) and items:  # lie about a size or a hash
        index = draw(st.integers(0, len(items) - 1))
        info, data, listed = items[index]
        if info.isreg():
            items[index] = (*_file(info.name, data + b"!"), listed)
    return kind, manifest, [(info, data) for info, data, _ in items]


def _write(path: Path, archive: tuple[str, Any, Any]) -> None:
    kind, payload, items = archive
    if kind == "tar":
        write_tar(path, payload, items)
    else:
        path.write_bytes(payload)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _clean_line(text: str) -> bool:
    return all(ch in "\n\t" or (ord(ch) >= 32 and ord(ch) != 127) for ch in text)


ROOT_AS_FILE = ("tar", _manifest([_entry("data", b"")]), [_file("data", b"")])


@fuzz(0.5)
@given(archives())
@example(("tar", b'{"format":' + b"[" * 5000, []))
@example(ROOT_AS_FILE)
def test_any_archive_is_restored_as_listed_or_refused_writing_nothing(
        archive: tuple[str, Any, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "backup.tar.gz"
        _write(path, archive)
        data_dir, index_dir = root / "target" / "data", root / "target" / "index"
        try:
            manifest = restore_backup(path, data_dir=data_dir, index_dir=index_dir).manifest
        except BackupError:
            assert _tree(root) == {"backup.tar.gz"}, "a refused archive writes nothing"
            return
        written = {p for p in _tree(root) if (root / p).is_file()} - {"backup.tar.gz"}
        listed = {entry.path for entry in manifest.files}
        assert all(p.startswith("target/") for p in written), written
        for entry in manifest.files:  # what the manifest lists, under the target roots
            matches = [root / p for p in written if p.endswith(entry.path.split("/", 1)[1])]
            assert any(hashlib.sha256(m.read_bytes()).hexdigest() == entry.sha256
                       for m in matches), (entry, written)
        assert len(written) <= len(listed) + 1, (written, listed)
    assert not Path("/tmp/evil-fuzz").exists()


FORGED_HEADER = ("tar", _manifest([_entry("data/a", b"x")], created_at="\x1b]0;owned\x07\r\nforged",
                                 app_version="\x1b[2J"), [_file("data/a", b"x")])


@fuzz(0.5)
@given(archives())
@example(FORGED_HEADER)
def test_verify_says_ok_or_one_clean_error_line(archive: tuple[str, Any, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "backup.tar.gz"
        _write(path, archive)
        result = runner.invoke(app, ["backup", "verify", str(path)])
        try:
            verify_backup(path)
            expected = 0
        except BackupError:
            expected = 3
    assert result.exit_code == expected, (result.exception, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    output = result.stdout + result.stderr
    assert len(output.strip().splitlines()) == 1, output
    assert _clean_line(output), f"a hostile archive cannot write control characters: {output!r}"


def test_a_deeply_nested_manifest_is_a_damaged_backup(tmp_path: Path) -> None:
    """Found by the fuzzer: json.loads raised RecursionError through verify and restore."""
    path = write_tar(tmp_path / "deep.tar.gz", b'{"format":' + b"[" * 5000, [])
    result = runner.invoke(app, ["backup", "verify", str(path)])
    assert result.exit_code == 3, result.exception
    assert "manifest.json is not valid JSON" in result.stderr


def test_a_forged_header_cannot_write_terminal_escapes(tmp_path: Path) -> None:
    """Found by the fuzzer: verify printed the manifest's created_at and app_version as they
    were, so an archive could clear the screen, set the title or forge an output line."""
    path = tmp_path / "forged.tar.gz"
    _write(path, FORGED_HEADER)
    result = runner.invoke(app, ["backup", "verify", str(path)])
    assert result.exit_code == 3
    assert "control characters in header fields" in result.stderr
    assert _clean_line(result.stdout + result.stderr)


def test_a_file_in_place_of_a_top_level_folder_is_refused_before_writing(
        tmp_path: Path) -> None:
    """Found by the fuzzer: a manifest listing a file named `data` verified, then restore
    failed late ("changed since it was verified") leaving the target folders behind."""
    path = tmp_path / "root-as-file.tar.gz"
    _write(path, ROOT_AS_FILE)
    result = runner.invoke(app, ["backup", "restore", str(path), "--data-dir",
                                 str(tmp_path / "target" / "data")])
    assert result.exit_code == 3 and "malformed file entry" in result.stderr
    assert not (tmp_path / "target").exists()
