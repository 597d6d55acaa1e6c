"""docker/slim_venv.py on a small site-packages folder: what it strips and compiles still
imports and runs, our own packages keep their source, auditwheel's libraries and files
that do not compile are left alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "docker"))
import slim_venv  # noqa: E402  (docker/slim_venv.py)


def _extension() -> Path:
    """A real extension module of this interpreter (ELF with symbol tables to strip)."""
    import _json

    location = getattr(_json, "__file__", None)
    if location is None or not location.endswith(sysconfig.get_config_var("EXT_SUFFIX")):
        pytest.skip("this interpreter has _json built in, not as an extension module")
    return Path(location)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    (site / "theirs" / "sub").mkdir(parents=True)
    (site / "theirs" / "__init__.py").write_text("VALUE = 41\n")
    (site / "theirs" / "sub" / "__init__.py").write_text(
        "from theirs import VALUE\n\ndef answer():\n    return VALUE + 1\n")
    (site / "theirs" / "broken.py").write_text("def (:\n")  # a template, never imported
    (site / "single.py").write_text("NAME = 'single'\n")
    (site / "ours").mkdir()
    (site / "ours" / "__init__.py").write_text("OWN = True\n")
    (site / "theirs-1.0.dist-info").mkdir()
    (site / "theirs-1.0.dist-info" / "METADATA").write_text("Name: theirs\n")
    return site


def _import(site: Path, code: str) -> str:
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                            text=True, env={"PYTHONPATH": str(site)}, check=True)
    return result.stdout.strip()


def test_third_party_code_runs_from_bytecode_and_ours_keeps_its_source(site: Path) -> None:
    assert slim_venv.main([str(site), "--keep-source", "ours"]) == 0

    assert not list((site / "theirs").rglob("__init__.py"))
    assert (site / "theirs" / "sub" / "__init__.pyc").is_file()
    assert not (site / "single.py").exists() and (site / "single.pyc").is_file()
    assert (site / "ours" / "__init__.py").is_file()
    assert not (site / "ours" / "__init__.pyc").exists()
    assert (site / "theirs" / "broken.py").is_file()  # did not compile: source kept
    assert (site / "theirs-1.0.dist-info" / "METADATA").is_file()
    assert not list(site.rglob("__pycache__"))
    out = _import(site, "import theirs.sub, single, ours; "
                        "print(theirs.sub.answer(), single.NAME, ours.OWN)")
    assert out == "42 single True"


@pytest.mark.skipif(shutil.which("strip") is None, reason="binutils' strip not installed")
def test_shared_objects_are_stripped_and_still_load_but_vendored_ones_are_untouched(
        site: Path) -> None:
    source = _extension()
    stripped = site / "theirs" / source.name
    shutil.copy2(source, stripped)
    vendored = site / "theirs.libs" / "libsomething-1a2b3c.so.1"
    vendored.parent.mkdir()
    shutil.copy2(source, vendored)
    not_elf = site / "theirs" / "notes.so.txt"
    not_elf.write_text("not a library")
    before = source.read_bytes()
    probe = site.parent / "probe.so"
    shutil.copy2(source, probe)
    slim_venv.strip([probe])
    if probe.stat().st_size == len(before):
        pytest.skip(f"{source} has no symbol table to strip")

    assert slim_venv.shared_objects(site) == [stripped]
    slim_venv.main([str(site)])

    assert stripped.stat().st_size < len(before)
    assert vendored.read_bytes() == before
    assert not_elf.read_text() == "not a library"
    assert _import(site, "import theirs._json as j; print(j.encode_basestring('a'))") == '"a"'


def test_a_missing_folder_is_one_clear_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        slim_venv.main([str(tmp_path / "absent")])
    assert raised.value.code == 2
    assert "is not a directory" in capsys.readouterr().err
