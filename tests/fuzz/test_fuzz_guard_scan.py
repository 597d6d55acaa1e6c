"""Fuzzing `signal-rag guard scan` input: any bytes on stdin or in a file end in verdicts
(exit 0) or an error before any output (exit 2), never a traceback, and an error never
echoes the scanned text (it may be an attack or private data)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.cli import app
from tests.fuzz import fuzz

runner = CliRunner()
MARKER = "zq-private-marker-5521"
"""Planted in every generated text: an error message must never contain it."""

rows = st.fixed_dictionaries(
    {"text": st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
     .map(lambda t: MARKER + t)},
    optional={"label": st.sampled_from([0, 1, 2, True, None, "1"]),
              "kind": st.text(max_size=8) | st.integers()})
line_endings = st.sampled_from(["\n", "\r\n", "\n\n", "\r", "\u2028", "\x0b"])


@st.composite
def scan_inputs(draw: st.DrawFn) -> bytes:
    """JSON lines (ASCII-escaped or raw UTF-8), broken lines and raw bytes, mixed."""
    pieces = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["row", "raw-row", "json", "junk"]))
        if kind == "row":
            pieces.append(json.dumps(draw(rows)))
        elif kind == "raw-row":
            pieces.append(json.dumps(draw(rows), ensure_ascii=False))
        elif kind == "json":
            pieces.append(json.dumps(draw(st.one_of(st.integers(), st.text(max_size=10),
                                                    st.lists(st.integers(), max_size=3)))))
        else:
            pieces.append(MARKER + draw(st.text(max_size=20)))
        pieces.append(draw(line_endings))
    data = "".join(pieces).encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=8))
    return data


def _check(result_code: int, stdout: str, stderr: str) -> None:
    assert result_code in (0, 2), (result_code, stderr)
    assert "Traceback" not in stderr
    if result_code == 2:  # "a malformed line stops the scan before any output"
        assert stdout == "" and stderr.startswith("error: "), (stdout, stderr)
        assert MARKER not in stderr, "an error never echoes the scanned text"
    else:
        for line in stdout.splitlines():
            assert set(json.loads(line)) == {"blocked", "score", "categories", "reason"}


@fuzz(0.5)
@given(scan_inputs())
def test_any_stdin_ends_in_verdicts_or_one_clear_error(data: bytes) -> None:
    result = runner.invoke(app, ["guard", "scan", "-"], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    _check(result.exit_code, result.stdout, result.stderr)


@fuzz(0.3)
@given(scan_inputs())
def test_any_file_ends_in_verdicts_or_one_clear_error(tmp_path_factory, data: bytes) -> None:
    path: Path = tmp_path_factory.mktemp("scan") / "input.jsonl"
    path.write_bytes(data)
    result = runner.invoke(app, ["guard", "scan", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    _check(result.exit_code, result.stdout, result.stderr)


@fuzz(0.5)
@given(st.lists(rows.filter(lambda r: r.get("label", 0) in (0, 1, None)
                            and not isinstance(r.get("label"), bool)), max_size=5),
       st.booleans())
@example([{"text": MARKER + "\x85"}], False)
@example([{"text": "a\u2028b", "label": 1}, {"text": "c\x1cd"}], False)
def test_valid_json_lines_get_one_verdict_each(items: list[dict[str, object]],
                                               ascii_only: bool) -> None:
    """Valid JSON Lines (one object per line, "\\n"-terminated, raw UTF-8 allowed as the
    format allows) are all scanned, whatever characters the texts hold. Found by this
    fuzzer: splitting with str.splitlines() broke lines at U+0085, U+2028 and U+001C."""
    data = "".join(json.dumps(item, ensure_ascii=ascii_only) + "\n" for item in items)
    result = runner.invoke(app, ["guard", "scan", "-"],
                           input=data.encode("utf-8", errors="surrogatepass"))
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(items)
