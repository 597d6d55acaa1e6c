"""`signal-rag link`: link signal-cli to a Signal account as a secondary device, showing
the device-link URI as a QR code in the terminal (setup.sh --link calls it).

`signal-cli link -n NAME` prints one `sgnl://linkdevice?uuid=...&pub_key=...` line, waits
until a phone scans it (Signal app: Settings > Linked devices), then prints
`Associated with: +NUMBER` and exits 0. signal-cli leaves the QR code to tools like
qrencode, which a fresh machine lacks; this module is the one home for that step.

- segno (pure Python, no dependencies) encodes the QR code. We draw its matrix ourselves,
  with half blocks in explicit black on white: segno's terminal writers draw dark modules
  in the terminal's background colour, which is inverted (and not scannable by many
  phones) on a light-background terminal.
- The URI is shown on stderr, with the QR code, and nowhere else: this command sets up no
  logging and writes no file but --account-file. The linked number is never printed;
  --account-file (mode 0600) hands it to setup.sh for the .env.
- signal-cli's own error lines are passed on with phone numbers and link URIs masked.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Annotated
from urllib.parse import parse_qs, urlsplit

import typer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
URI_PREFIXES = ("sgnl://linkdevice?", "tsdevice:/?")  # tsdevice: before signal-cli 0.11
ASSOCIATED = "Associated with: "
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SENSITIVE = re.compile(r"\+[0-9]{6,15}|(?:sgnl|tsdevice):\S+")
QR_BORDER = 2  # quiet zone in modules; the white background frames it further
_DRAW = "\x1b[30;107m"  # black on bright white, whatever the terminal's own colours
_RESET = "\x1b[0m"
_BLOCKS = {(0, 0): " ", (1, 0): "\u2580", (0, 1): "\u2584", (1, 1): "\u2588"}


class LinkError(Exception):
    """Linking failed; the message names no number and no URI."""


class UsageError(LinkError):
    """The command cannot start (no signal-cli, bad name): exit code 2."""


def find_signal_cli(explicit: str | None = None) -> str:
    """The signal-cli to run: `explicit`, else $SIGNAL_CLI_BIN, else `signal-cli` on PATH."""
    candidate = explicit or os.environ.get("SIGNAL_CLI_BIN") or "signal-cli"
    found = shutil.which(candidate)
    if found is None:
        raise UsageError(f"signal-cli not found ({candidate}): run ./setup.sh "
                         "--with-signal-cli, or install it and put it on PATH")
    return found


def link_uri(line: str) -> str | None:
    """The device-link URI if `line` is one (it must carry uuid and pub_key), else None."""
    text = line.strip()
    if not text.startswith(URI_PREFIXES):
        return None
    query = parse_qs(urlsplit(text).query)
    return text if query.get("uuid") and query.get("pub_key") else None


def render_qr(data: str, border: int = QR_BORDER) -> str:
    """`data` as a QR code drawn with half blocks, two module rows per text line."""
    import segno

    rows = [tuple(row) for row in segno.make_qr(data).matrix_iter(border=border)]
    if len(rows) % 2:
        rows.append((0,) * len(rows[0]))  # one more light row: part of the quiet zone
    return "".join(
        _DRAW + "".join(_BLOCKS[top, bottom] for top, bottom in zip(upper, lower, strict=True))
        + _RESET + "\n"
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True))


def mask(text: str) -> str:
    return _SENSITIVE.sub("[hidden]", text)


def _pump(stream: IO[str], kind: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    for line in stream:
        lines.put((kind, line))
    lines.put((kind, None))


def _show(uri: str, out: IO[str]) -> None:
    out.write("\nScan this code with the Signal app on the phone of the bot's account\n"
              "(Settings > Linked devices > Link new device):\n\n")
    out.write(render_qr(uri))
    out.write("\nThe same link as text, in case the code does not scan (it works once,\n"
              f"for a few minutes; do not share it):\n{uri}\n\n"
              "Waiting for the phone to confirm (Ctrl-C cancels) ...\n")
    out.flush()


def link_device(signal_cli: str, name: str, *, config: Path | None = None,
                timeout: float = 600.0, out: IO[str] = sys.stderr) -> str:
    """Run `signal-cli link`, show its URI as a QR code on `out`, and return the linked
    number once the phone has confirmed. Raises LinkError."""
    argv = [signal_cli, *(["--config", str(config)] if config else []), "link", "-n", name]
    try:  # a list, no shell; the executable is the operator's own signal-cli
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,  # noqa: S603
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot run {signal_cli} ({type(exc).__name__})") from None
    try:
        shown, number, problems = _follow(proc, time.monotonic() + timeout, timeout, out)
    except KeyboardInterrupt:
        raise LinkError("cancelled") from None
    finally:
        _stop(proc)
    detail = f": {problems[-1]}" if problems else ""
    if proc.returncode != 0:
        raise LinkError(f"signal-cli link failed (exit {proc.returncode}){detail}")
    if not shown:
        raise LinkError(f"signal-cli printed no device-link URI{detail}")
    if number is None or not E164.fullmatch(number):
        raise LinkError("signal-cli exited without naming the linked number; check with "
                        "`signal-cli listAccounts`")
    return number


def _follow(proc: subprocess.Popen[str], deadline: float, timeout: float,
            out: IO[str]) -> tuple[bool, str | None, list[str]]:
    """Read signal-cli's output until it exits: show the URI, note the number, keep the
    other lines (masked) for the error message."""
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    for stream, kind in ((proc.stdout, "out"), (proc.stderr, "err")):
        assert stream is not None
        threading.Thread(target=_pump, args=(stream, kind, lines), daemon=True).start()
    shown, number, open_streams = False, None, 2
    problems: list[str] = []
    while open_streams:
        try:
            kind, line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise LinkError(f"no confirmation from the phone within {timeout:g} s; "
                            "run the link again") from None
        if line is None:
            open_streams -= 1
        elif kind == "out" and not shown and (uri := link_uri(line)):
            _show(uri, out)
            shown = True
        elif kind == "out" and line.startswith(ASSOCIATED):
            number = line.removeprefix(ASSOCIATED).strip()
        elif line.strip():
            problems.append(mask(line.strip()))
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        raise LinkError("signal-cli closed its output but did not exit") from None
    return shown, number, problems


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def link_command(
        name: Annotated[str, typer.Option(
            "--name", "-n", help="Device name shown in the phone's list of linked devices.")]
        = "signal-rag",
        signal_cli: Annotated[str | None, typer.Option(
            help="signal-cli executable (default: $SIGNAL_CLI_BIN, else signal-cli on PATH).")]
        = None,
        config: Annotated[Path | None, typer.Option(
            help="signal-cli's data folder (default: its own, ~/.local/share/signal-cli).")]
        = None,
        timeout: Annotated[float, typer.Option(
            min=1, help="Seconds to wait for the phone to confirm.")] = 600.0,
        account_file: Annotated[Path | None, typer.Option(
            help="Write the linked number to this file (mode 0600); it is never printed.")]
        = None,
) -> None:
    """Link signal-cli to your Signal account as a new device: shows a QR code to scan
    with the phone (needs Signal's servers; docs/linking-signal.md)."""
    try:
        if not name.strip() or len(name) > 50 or not name.isprintable():
            raise UsageError("--name must be 1 to 50 printable characters")
        number = link_device(find_signal_cli(signal_cli), name.strip(), config=config,
                             timeout=timeout)
        if account_file is not None:
            write_private(account_file, number + "\n")
    except LinkError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED) from None
    except OSError as exc:
        typer.echo(f"error: cannot write {account_file} ({type(exc).__name__})", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo("Linked. signal-cli keeps this device's keys in its data folder: start its "
               "daemon for the bot (docs/linking-signal.md).", err=True)
