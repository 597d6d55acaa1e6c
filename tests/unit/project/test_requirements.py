"""docs/requirements.md defines every requirement id the repository cites (`SEC-4`, `OBS-7`,
...), once, and every file it links to exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "requirements.md"
ID = re.compile(r"\b(?:SIG|ACC|KB|GR|SEC|RES|OBS|EV|DEP|PERF)-\d+\b")
ROW = re.compile(r"^\| ((?:SIG|ACC|KB|GR|SEC|RES|OBS|EV|DEP|PERF)-\d+) \|", re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
SCANNED = (".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".json", ".cfg", ".txt", "")


def defined(doc: Path = DOC) -> list[str]:
    return ROW.findall(doc.read_text(encoding="utf-8"))


def broken_links(doc: Path = DOC) -> list[str]:
    links = [link.split("#")[0] for link in LINK.findall(doc.read_text(encoding="utf-8"))]
    return [link for link in links if not (doc.parent / link.replace("\\_", "_")).exists()]


def tracked_files() -> list[Path]:
    """The repository's own text files: what git tracks (or would, for new files)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # no git (an unpacked source tree)
        listed = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                  if p.is_file() and not {".venv", ".git", "data"} & set(p.parts)]
    return [ROOT / name for name in listed
            if Path(name).suffix in SCANNED and not name.endswith(("corpus.jsonl",))
            and (ROOT / name).is_file()
            and name not in ("docs/requirements.md", "tests/unit/project/test_requirements.py")]


def cited(paths: list[Path], root: Path = ROOT) -> dict[str, str]:
    """Each id cited anywhere, with one file that cites it."""
    found: dict[str, str] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for match in ID.findall(text):
            found.setdefault(match, path.relative_to(root).as_posix())
    return found


def test_every_cited_requirement_id_is_defined() -> None:
    ids = cited(tracked_files())
    assert {"SEC-4", "OBS-7", "RES-3", "PERF-1"} <= ids.keys()  # the scan reached the code
    missing = {i: where for i, where in ids.items() if i not in set(defined())}
    assert not missing, f"define these in docs/requirements.md: {missing}"


def test_each_id_is_defined_once() -> None:
    rows = defined()
    assert len(rows) == len(set(rows)) and len(rows) >= 40


def test_every_link_points_at_a_file_that_exists() -> None:
    assert LINK.findall(DOC.read_text(encoding="utf-8"))
    assert not broken_links(), f"docs/requirements.md links to missing files: {broken_links()}"


def test_the_checks_catch_an_undefined_id_and_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "requirements.md"
    doc.write_text("| SEC-1 | sanitise | [x](../x.py) | [y](../tests/y.py) |\n", encoding="utf-8")
    (tmp_path / "x.py").write_text('"""Implements SEC-1 and SEC-99."""\n', encoding="utf-8")
    ids = cited([tmp_path / "x.py"], tmp_path)
    assert sorted(ids) == ["SEC-1", "SEC-99"]
    assert [i for i in ids if i not in defined(doc)] == ["SEC-99"]
    assert broken_links(doc) == ["../tests/y.py"]


@pytest.mark.parametrize("text", ["UTF-8", "SHA-256", "GPL-2.0+", "PSF-2", "%PDF-1.4"])
def test_look_alikes_are_not_requirement_ids(text: str) -> None:
    assert not ID.findall(text)
