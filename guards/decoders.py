"""Decode obfuscated payloads so the rules and the learned detector see what a model would.

Models read base64, hex, rot13, percent- and HTML-entity encoding and Unicode tag characters
("ASCII smuggling") as easily as plain text, so an attack hidden that way must be checked in
its decoded form. Every decoder is bounded (candidates, length, depth): hostile input costs
linear time and never expands without limit. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_DEPTH = 3
"""Nested encodings deeper than this are not unwrapped (the blob itself still counts)."""
MAX_CANDIDATES = 8
"""Per decoder and level: a passage full of blobs cannot make the check slow."""
MAX_DECODED_CHARS = 4000

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/_=-])")
_HEX = re.compile(r"(?<![0-9a-fA-F])(?:(?:\\x|0x|%)?[0-9a-fA-F]{2}[\s,:]?){8,}")
_PERCENT = re.compile(r"[\w.~+-]*(?:%[0-9a-fA-F]{2}[\w.~+-]*){3,}")
_ENTITY = re.compile(r"(?:&#(?:x[0-9a-fA-F]{1,6}|[0-9]{1,7});){4,}")
_TAGS = re.compile("[\U000e0020-\U000e007e]{3,}")
_HEX_NOISE = re.compile(r"\\x|0x|%|[\s,:]")
_HEX_HINT = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{2}[\s,:][0-9a-fA-F]{2}[\s,:][0-9a-fA-F]{2}"
                       r"[\s,:][0-9a-fA-F]{2}[\s,:][0-9a-fA-F]{2}")
_BASE64_HINT = re.compile(r"[A-Za-z0-9+/_-]{16}")


@dataclass(slots=True)
class DecodeWork:
    """Work done by `decode_payloads`, counted so tests bound it without a clock."""

    decoder_calls: int = 0
    """Decoders run on a candidate text (after their cheap check passed)."""
    decoded_chars: int = 0
    """Characters of decoded output kept."""


@dataclass(frozen=True, slots=True)
class Decoded:
    encoding: str
    """Chain of encodings unwrapped, e.g. "base64" or "base64>hex" (safe to log)."""
    text: str


def _readable(raw: bytes) -> str | None:
    """UTF-8 text that is mostly printable, or None: binary blobs (images, keys) are not text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    letters = sum(c.isalpha() for c in text)
    if printable < 0.9 * len(text) or letters < 0.5 * len(text.replace(" ", "")):
        return None
    return text[:MAX_DECODED_CHARS]


def _base64(text: str) -> Iterator[str]:
    for match in _BASE64.finditer(text):
        blob = match.group(0)
        # A long lower-case word or a hex string is not base64 worth decoding.
        if blob.isalpha() and (blob.islower() or blob.isupper()):
            continue
        blob = blob.replace("-", "+").replace("_", "/").rstrip("=")
        blob += "=" * (-len(blob) % 4)
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            continue
        if (decoded := _readable(raw)) is not None:
            yield decoded


def _hex(text: str) -> Iterator[str]:
    for match in _HEX.finditer(text):
        digits = _HEX_NOISE.sub("", match.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            continue
        if (decoded := _readable(raw)) is not None:
            yield decoded


def _percent(text: str) -> Iterator[str]:
    for match in _PERCENT.finditer(text):
        # Bytes first: "%ff" is not UTF-8, and a decoder must never raise on hostile input.
        if (decoded := _readable(urllib.parse.unquote_to_bytes(match.group(0)))) is not None:
            yield decoded


def _entities(text: str) -> Iterator[str]:
    for match in _ENTITY.finditer(text):
        yield html.unescape(match.group(0))


def _tags(text: str) -> Iterator[str]:
    for match in _TAGS.finditer(text):
        yield "".join(chr(ord(c) - 0xE0000) for c in match.group(0))


def rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def _has_hex_run(text: str) -> bool:
    return "\\x" in text or "0x" in text or _HEX_HINT.search(text) is not None


# (name, decoder, cheap check that the decoder can find anything): most text fails the check.
_DECODERS: tuple[tuple[str, Callable[[str], Iterator[str]], Callable[[str], bool]], ...] = (
    ("base64", _base64, lambda text: _BASE64_HINT.search(text) is not None),
    ("hex", _hex, _has_hex_run),
    ("percent", _percent, lambda text: "%" in text),
    ("entities", _entities, lambda text: "&#" in text),
    ("tags", _tags, lambda text: bool(text) and max(text) >= "\U000e0020"),
)


DECODED_BUDGET = MAX_DECODED_CHARS * 4
"""Decoded characters kept per call, over all levels and candidates."""


def decode_payloads(text: str, depth: int = MAX_DEPTH,
                    work: DecodeWork | None = None) -> list[Decoded]:
    """Every embedded encoded payload, unwrapped up to `depth` levels of nesting.

    `work`, when given, is incremented with the work done (for tests and benchmarks).
    """
    work = DecodeWork() if work is None else work
    found: list[Decoded] = []
    frontier = [Decoded("", text)]
    budget = DECODED_BUDGET
    for _level in range(depth):
        next_frontier: list[Decoded] = []
        for parent in frontier:
            for name, decoder, possible in _DECODERS:
                if not possible(parent.text):
                    continue
                work.decoder_calls += 1
                for count, decoded in enumerate(decoder(parent.text)):
                    if count >= MAX_CANDIDATES or budget <= 0:
                        break
                    budget -= len(decoded)
                    work.decoded_chars += len(decoded[:MAX_DECODED_CHARS])
                    chain = f"{parent.encoding}>{name}" if parent.encoding else name
                    next_frontier.append(Decoded(chain, decoded[:MAX_DECODED_CHARS]))
        if not next_frontier:
            break
        found.extend(next_frontier)
        frontier = next_frontier
    return found
