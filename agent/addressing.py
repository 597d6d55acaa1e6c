"""Decide whether a message is meant for the bot, and extract the question from it (SIG-5).

Why: in groups the bot must answer only when @-mentioned, quoted, or addressed with the
command prefix, never to unrelated chatter. Mentions arrive as U+FFFC placeholders at
UTF-16 offsets chosen by the sender, so they are untrusted: a mention that is out of range,
overlaps another, does not sit on a placeholder or names nobody is ignored, never an error.
Other people's mentions become "@name" (or "@someone"), never a phone number. Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from agent.signal.envelope import OBJECT_REPLACEMENT, Envelope, Mention

__all__ = ["Addressing", "BotIdentity", "address", "clean_text", "is_bot"]

Reason = Literal["direct", "mention", "quote", "command", "none"]

_PLACEHOLDER = OBJECT_REPLACEMENT.encode("utf-16-le")
_FALLBACK_NAME = "someone"
_NAME_MAX = 64
_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-/]{5,}$")


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """The bot's own account: its service id (UUID) and, if known, its E.164 number."""

    uuid: str | None
    number: str | None = None


@dataclass(frozen=True, slots=True)
class Addressing:
    """Whether to answer, why, and the question with mentions resolved."""

    addressed: bool
    reason: Reason
    text: str
    """The message text with the bot's mention removed and other mentions as "@name"."""


def is_bot(bot: BotIdentity, uuid: object, number: object) -> bool:
    """True when the given uuid or number is the bot's; None or junk never matches."""
    return (isinstance(uuid, str) and bool(uuid) and uuid == bot.uuid) or (
        isinstance(number, str) and bool(number) and number == bot.number
    )


def _display_name(mention: Mention, names: Mapping[str, str]) -> str:
    raw = names.get(mention.uuid, "") if isinstance(mention.uuid, str) else ""
    name = " ".join(str(raw).split())[:_NAME_MAX]
    if not name or _PHONE_LIKE.match(name):
        return _FALLBACK_NAME
    return name


def _valid_mentions(data: bytes, mentions: Iterable[object]) -> list[Mention]:
    """Mentions that name someone and sit on a placeholder inside the text, with no overlap
    among them (every mention taking part in an overlap is dropped)."""
    size = len(data) // 2
    candidates: list[Mention] = []
    for item in mentions:
        if not isinstance(item, Mention):
            continue
        start, length = item.start, item.length
        if not (isinstance(start, int) and isinstance(length, int)):
            continue
        if isinstance(start, bool) or isinstance(length, bool):
            continue
        if start < 0 or length < 1 or start + length > size:
            continue
        if data[2 * start : 2 * start + 2] != _PLACEHOLDER:
            continue
        end = start + length
        if end < size and 0xDC <= data[2 * end + 1] <= 0xDF:  # would split a surrogate pair
            continue
        if not (item.uuid or item.number):
            continue
        candidates.append(item)
    candidates.sort(key=lambda m: m.start)
    valid: list[Mention] = []
    reach = -1  # furthest end of the mentions before the current one
    for i, item in enumerate(candidates):
        end = item.start + item.length
        overlaps_prev = item.start < reach
        overlaps_next = i + 1 < len(candidates) and candidates[i + 1].start < end
        reach = max(reach, end)
        if not (overlaps_prev or overlaps_next):
            valid.append(item)
    return valid


def clean_text(
    text: str,
    mentions: Iterable[object],
    bot: BotIdentity,
    names: Mapping[str, str] | None = None,
) -> tuple[str, bool]:
    """Return (text with mentions resolved, whether the bot was validly mentioned)."""
    data = text.encode("utf-16-le", "surrogatepass")
    names = names or {}
    pieces: list[str] = []
    pos = 0
    mentioned = False
    for item in _valid_mentions(data, mentions):
        pieces.append(data[2 * pos : 2 * item.start].decode("utf-16-le", "surrogatepass"))
        if is_bot(bot, item.uuid, item.number):
            mentioned = True
        else:
            pieces.append("@" + _display_name(item, names))
        pos = item.start + item.length
    pieces.append(data[2 * pos :].decode("utf-16-le", "surrogatepass"))
    return "".join(pieces).strip(), mentioned


def address(
    envelope: Envelope,
    bot: BotIdentity,
    *,
    command_prefix: str = "/",
    names: Mapping[str, str] | None = None,
) -> Addressing:
    """Decide whether `envelope` is addressed to the bot. Direct messages always are; in a
    group the bot must be @-mentioned, quoted, or the text must start with the prefix.

    `names` maps service ids to display names for rendering other people's mentions.
    """
    raw = envelope.text if isinstance(envelope.text, str) else ""
    mentions = envelope.mentions if isinstance(envelope.mentions, tuple) else ()
    text, mentioned = clean_text(raw, mentions, bot, names)
    if not envelope.is_group:
        return Addressing(addressed=True, reason="direct", text=text)
    if mentioned:
        return Addressing(addressed=True, reason="mention", text=text)
    quote = envelope.quote
    if quote is not None and is_bot(
        bot, getattr(quote, "author_uuid", None), getattr(quote, "author_number", None)
    ):
        return Addressing(addressed=True, reason="quote", text=text)
    if command_prefix and text.startswith(command_prefix):
        return Addressing(addressed=True, reason="command", text=text)
    return Addressing(addressed=False, reason="none", text=text)
