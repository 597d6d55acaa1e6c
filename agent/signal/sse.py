"""A minimal server-sent-events reader for signal-cli's `/api/v1/events` stream.

Why our own rather than `httpx-sse`: its `aiter_sse()` drops comment lines, and signal-cli's
only keep-alive is a comment line (`:` every 15 s), so a stale-stream watchdog on top of
it could not tell a quiet stream from a dead one; it also buffers a line of any length.
This reader works on raw bytes, reports every complete line (comments included) so the
caller can reset its watchdog, caps the length of a line, and implements just the parts
of the SSE format (WHATWG HTML, "server-sent events") that the daemon uses.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None


class OverlongLine:
    """Stands for a line longer than the limit; its bytes were dropped."""

    def __init__(self, length: int) -> None:
        self.length = length


class LineSplitter:
    """Cut a byte stream into lines (without the terminator), at most `max_bytes` each.

    A longer line is dropped as it arrives (memory stays bounded) and reported as one
    OverlongLine once its end is seen.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._dropped = 0

    def feed(self, chunk: bytes) -> list[bytes | OverlongLine]:
        lines: list[bytes | OverlongLine] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            self._append(chunk[start:end])
            if self._dropped:
                lines.append(OverlongLine(self._dropped))
            else:
                lines.append(bytes(self._buffer).removesuffix(b"\r"))
            self._buffer.clear()
            self._dropped = 0
            start = end + 1
        self._append(chunk[start:])
        return lines

    def _append(self, piece: bytes) -> None:
        if self._dropped:
            self._dropped += len(piece)
        elif len(self._buffer) + len(piece) > self.max_bytes:
            self._dropped = len(self._buffer) + len(piece)
            self._buffer.clear()
        else:
            self._buffer += piece


class SSEParser:
    """Turn lines into events: `field:value` lines, a blank line ends an event, lines that
    start with `:` are comments. An event that lost a line to the length cap is dropped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._broken = False

    def feed(self, line: bytes | OverlongLine) -> SSEEvent | None:
        if isinstance(line, OverlongLine):
            self._broken = True
            return None
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        text = line.decode("utf-8", errors="replace")
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored, as the format says.
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data and not self._broken:
            event = SSEEvent(event=self._event or "message", data="\n".join(self._data),
                             id=self._id)
        self._event = ""
        self._data = []
        self._broken = False
        return event
