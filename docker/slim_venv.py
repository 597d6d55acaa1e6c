"""Shrink the image's venv without changing what runs: strip native libraries' symbol
tables and ship third-party Python code as bytecode only.

    python docker/slim_venv.py SITE_PACKAGES --keep-source agent graph guards knowledge evals

docker/Dockerfile runs this in its `venv` stage, after pip (SPEC DEP-1's 400 MB; the
figures are in docs/docker.md, "Size"). Our own script because no packaging tool does
both steps with the two exceptions below:

- `strip --strip-unneeded` on every shared object, except those under a `*.libs` folder:
  auditwheel vendors those libraries and rewrites them with patchelf, and stripping such a
  file makes it unloadable ("ELF load command address/offset not page-aligned": numpy's
  OpenBLAS). The dynamic symbols that loading needs are kept by `--strip-unneeded`.
- every third-party `.py` is compiled to a `.pyc` beside it (the layout Python imports
  without the source) and the source is removed; each `__pycache__` goes too. A traceback
  through a third-party package then names the file and line but cannot print the line.
  The packages named by `--keep-source` keep their source: ours, and any that read
  their own (anyio does, to import lazily).

Every step is checked: a file that does not compile keeps its source, and the runtime
stage imports what the bot's commands import before the image is accepted.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
import sys
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def shared_objects(site_packages: Path) -> list[Path]:
    """ELF files that may be stripped: not symlinks, not inside an auditwheel `*.libs`."""
    found = []
    for path in sorted(site_packages.rglob("*.so*")):
        if path.is_symlink() or not path.is_file():
            continue
        relative = path.relative_to(site_packages)
        if any(part.endswith(".libs") for part in relative.parts[:-1]):
            continue
        with path.open("rb") as handle:
            if handle.read(4) != ELF_MAGIC:
                continue
        found.append(path)
    return found


def strip(paths: list[Path], strip_command: str = "strip") -> None:
    if paths:
        subprocess.run([strip_command, "--strip-unneeded", *map(str, paths)],  # noqa: S603
                       check=True)  # our own paths, found above


def third_party(site_packages: Path, keep_source: set[str]) -> list[Path]:
    """Top-level packages and modules that are not ours (metadata folders excluded)."""
    return [path for path in sorted(site_packages.iterdir())
            if path.name not in keep_source and path.stem not in keep_source
            and not path.name.endswith((".dist-info", ".egg-info", ".libs"))
            and (path.is_dir() or path.suffix == ".py")]


def compile_sourceless(paths: list[Path]) -> int:
    """Compile each `.py` to a `.pyc` beside it, then remove the sources that compiled;
    returns how many sources were removed."""
    for path in paths:
        if path.is_dir():
            compileall.compile_dir(path, quiet=2, legacy=True, workers=0)
        else:
            compileall.compile_file(path, quiet=2, legacy=True)
    removed = 0
    for path in paths:
        sources = path.rglob("*.py") if path.is_dir() else [path]
        for source in list(sources):
            if source.with_suffix(".pyc").is_file():
                source.unlink()
                removed += 1
        caches = path.rglob("__pycache__") if path.is_dir() else []
        for cache in list(caches):
            shutil.rmtree(cache, ignore_errors=True)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site_packages", type=Path)
    parser.add_argument("--keep-source", nargs="*", default=[],
                        help="top-level packages that keep their .py files")
    parser.add_argument("--strip", default="strip", help="the strip command")
    args = parser.parse_args(argv)
    site_packages: Path = args.site_packages
    if not site_packages.is_dir():
        parser.error(f"{site_packages} is not a directory")
    objects = shared_objects(site_packages)
    strip(objects, args.strip)
    removed = compile_sourceless(third_party(site_packages, set(args.keep_source)))
    print(f"stripped {len(objects)} shared objects; {removed} third-party modules as "
          "bytecode only", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
