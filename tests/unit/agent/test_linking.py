"""agent/linking.py: the terminal QR code, the URI parsing, and `signal-cli link` driven
through a fake signal-cli (a tiny script; the real one would contact Signal's servers)."""

from __future__ import annotations

import base64
import io
import os
import re
import stat
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import segno

from agent import linking

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BITS = {" ": (0, 0), "\u2580": (1, 0), "\u2584": (0, 1), "\u2588": (1, 1)}


def realistic_uri() -> str:
    """What signal-cli 0.13 prints: a URL-encoded base64 device id and a 33-byte public key
    (DeviceLinkUrl.createDeviceLinkUri)."""
    device_id = base64.b64encode(os.urandom(16)).decode()
    public_key = base64.b64encode(b"\x05" + os.urandom(32)).decode()
    return (f"sgnl://linkdevice?uuid={quote(device_id, safe='')}"
            f"&pub_key={quote(public_key, safe='')}")


def read_qr(text: str) -> list[tuple[int, ...]]:
    """The module rows drawn by render_qr, read back from terminal text (1 = dark)."""
    rows: list[tuple[int, ...]] = []
    for line in text.splitlines():
        if "\x1b[30;107m" not in line:
            continue
        cells = [BITS[char] for char in ANSI.sub("", line)]
        rows.append(tuple(top for top, _ in cells))
        rows.append(tuple(bottom for _, bottom in cells))
    return rows


def expected_rows(uri: str) -> list[tuple[int, ...]]:
    """segno's own matrix with the quiet zone, padded to an even number of rows."""
    rows = [tuple(row) for row in segno.make_qr(uri).matrix_iter(border=linking.QR_BORDER)]
    return rows + [(0,) * len(rows[0])] * (len(rows) % 2)


@pytest.mark.parametrize("uri", [realistic_uri(), realistic_uri() + "&capabilities=backup4",
                                 "tsdevice:/?uuid=x&pub_key=y", "a"])
def test_the_drawn_code_is_segnos_matrix_for_the_uri(uri):
    rows = read_qr(linking.render_qr(uri))
    assert rows == expected_rows(uri)
    # and not the matrix of anything else: one character changed gives another code
    assert rows != expected_rows(uri + "x")
    # the quiet zone is light, the finder pattern's corner dark
    border = linking.QR_BORDER
    assert set(rows[0]) == {0} and rows[border][border] == 1


def test_link_uri_needs_the_scheme_a_uuid_and_a_key():
    uri = realistic_uri()
    assert linking.link_uri(uri + "\n") == uri
    assert linking.link_uri("tsdevice:/?uuid=a&pub_key=b") == "tsdevice:/?uuid=a&pub_key=b"
    for line in ("INFO starting", "sgnl://linkdevice?uuid=a", "https://example.org/?uuid=a&pub_key=b",
                 "sgnl://linkdevice?pub_key=b", ""):
        assert linking.link_uri(line) is None


def test_mask_hides_numbers_and_link_uris():
    line = f"The user +15550001234 already exists; uri {realistic_uri()} end"
    masked = linking.mask(line)
    assert "+15550001234" not in masked and "sgnl:" not in masked
    assert masked == "The user [hidden] already exists; uri [hidden] end"


FAKE = f"""#!{sys.executable}
import os, sys
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(repr(sys.argv[1:]) + "\\n")
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "error":
    print("Link request error: +15550001234 is not allowed", file=sys.stderr)
    sys.exit(3)
if mode != "no-uri":
    print(os.environ["FAKE_URI"], flush=True)
if mode == "no-number":
    sys.exit(0)
print("INFO  some log line", file=sys.stderr)
print("Associated with: +15550001234", flush=True)
"""


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "bin" / "signal-cli"
    path.parent.mkdir()
    path.write_text(FAKE)
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_URI", realistic_uri())
    return path


def test_link_shows_the_code_and_returns_the_number(fake, tmp_path):
    out = io.StringIO()
    number = linking.link_device(str(fake), "my bot", config=tmp_path / "cfg", out=out)
    assert number == "+15550001234"
    uri = os.environ["FAKE_URI"]
    shown = out.getvalue()
    assert read_qr(shown) == expected_rows(uri)
    assert uri in shown and "+15550001234" not in shown
    called = (tmp_path / "calls").read_text()
    assert called == repr(["--config", str(tmp_path / "cfg"), "link", "-n", "my bot"]) + "\n"


@pytest.mark.parametrize(("mode", "message"), [
    ("error", "signal-cli link failed (exit 3): Link request error: [hidden] is not allowed"),
    ("no-uri", "signal-cli printed no device-link URI: INFO  some log line"),
    ("no-number", "signal-cli exited without naming the linked number"),
])
def test_link_failures_say_why_without_the_number(fake, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_MODE", mode)
    with pytest.raises(linking.LinkError) as caught:
        linking.link_device(str(fake), "bot", out=io.StringIO())
    assert str(caught.value).startswith(message)
    assert "+1555" not in str(caught.value)


def test_find_signal_cli(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("SIGNAL_CLI_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(linking.UsageError, match="signal-cli not found"):
        linking.find_signal_cli()
    assert linking.find_signal_cli(str(fake)) == str(fake)
    monkeypatch.setenv("SIGNAL_CLI_BIN", str(fake))
    assert linking.find_signal_cli() == str(fake)
    monkeypatch.delenv("SIGNAL_CLI_BIN")
    monkeypatch.setenv("PATH", str(fake.parent))
    assert linking.find_signal_cli() == str(fake)


def test_account_file_is_private(tmp_path):
    path = tmp_path / "account"
    path.write_text("old")
    path.chmod(0o644)
    linking.write_private(path, "+15550001234\n")
    assert path.read_text() == "+15550001234\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
