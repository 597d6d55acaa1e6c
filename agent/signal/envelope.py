"""Incoming signal-cli envelopes as small typed objects, parsed defensively.

Why our own: there is no maintained Python model of signal-cli's JSON output (signalbot
keeps raw dicts and logs whole messages), and the daemon's JSON is untrusted input for us:
a malformed or unexpected event must be skipped with a log line, never crash the receive
loop, and never put message text or phone numbers into the logs. The parser keeps only
what the bot needs (SIG-5, SIG-6, SIG-7) and checks the type of every field it reads.

Field names follow signal-cli 0.13.19 (`JsonMessageEnvelope` and friends in its source);
a receive payload is `{"account": ..., "envelope": {...}}`, plus `"exception":
{"message", "type"}` when the daemon could not decrypt or verify the message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

OBJECT_REPLACEMENT = "\ufffc"
"""signal-cli puts U+FFFC in `message` where each mention is."""


class EnvelopeKind(StrEnum):
    DATA = "data"
    EDIT = "edit"
    SYNC = "sync"
    RECEIPT = "receipt"
    TYPING = "typing"
    REACTION = "reaction"
    DELETE = "delete"
    STORY = "story"
    CALL = "call"
    UNKNOWN = "unknown"


class MalformedEnvelopeError(ValueError):
    """The payload is not what signal-cli sends. The text names a field, never a value."""


@dataclass(frozen=True, slots=True)
class Mention:
    """A mention at `start` (UTF-16 code units, as Signal counts) of `length` in the text."""

    uuid: str | None
    number: str | None
    start: int
    length: int


@dataclass(frozen=True, slots=True)
class Quote:
    """The message this one replies to; `id` is that message's timestamp."""

    id: int
    author_uuid: str | None
    author_number: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class Reaction:
    emoji: str
    target_author_uuid: str | None
    target_author_number: str | None
    target_sent_timestamp: int
    is_remove: bool


@dataclass(frozen=True, slots=True)
class Receipt:
    type: str
    """"delivery", "read", "viewed" or "unknown"."""
    when: int | None
    timestamps: tuple[int, ...]
    """Timestamps of the messages this receipt is for."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One incoming event. Users are keyed by `source_uuid`; `source_number` may be None."""

    kind: EnvelopeKind
    timestamp: int
    source_uuid: str | None = None
    source_number: str | None = None
    source_device: int | None = None
    account: str | None = None
    """The bot's own number this was received on (multi-account daemons)."""
    text: str | None = None
    mentions: tuple[Mention, ...] = ()
    quote: Quote | None = None
    group_id: str | None = None
    expires_in_seconds: int = 0
    """Disappearing-message timer of the chat; 0 when off."""
    reaction: Reaction | None = None
    receipt: Receipt | None = None
    typing_action: str | None = None
    """STARTED or STOPPED."""
    target_timestamp: int | None = None
    """For edits: the edited message's timestamp; for deletes: the deleted message's."""
    attachment_count: int = 0
    error_type: str | None = None
    """Class name of the daemon's exception for this envelope, if it reported one."""

    @property
    def is_group(self) -> bool:
        return self.group_id is not None


# --------------------------------------------------------------------------- field access


def _opt_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEnvelopeError(f"{path}.{key} is not a string")


def _opt_int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MalformedEnvelopeError(f"{path}.{key} is not an integer")


def _req_int(obj: Mapping[str, Any], key: str, path: str) -> int:
    value = _opt_int(obj, key, path)
    if value is None:
        raise MalformedEnvelopeError(f"{path}.{key} is missing")
    return value


def _opt_bool(obj: Mapping[str, Any], key: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise MalformedEnvelopeError(f"{path}.{key} is not a boolean")


def _opt_obj(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    raise MalformedEnvelopeError(f"{path}.{key} is not an object")


def _opt_list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise MalformedEnvelopeError(f"{path}.{key} is not a list")


def _objects(items: list[Any], path: str) -> list[Mapping[str, Any]]:
    if not all(isinstance(item, Mapping) for item in items):
        raise MalformedEnvelopeError(f"{path} has an item that is not an object")
    return items


# --------------------------------------------------------------------------- parts


def _mentions(message: Mapping[str, Any], path: str) -> tuple[Mention, ...]:
    items = _objects(_opt_list(message, "mentions", path), f"{path}.mentions")
    where = f"{path}.mentions[]"
    return tuple(
        Mention(
            uuid=_opt_str(item, "uuid", where),
            number=_opt_str(item, "number", where),
            start=_req_int(item, "start", where),
            length=_req_int(item, "length", where),
        )
        for item in items
    )


def _quote(message: Mapping[str, Any], path: str) -> Quote | None:
    quote = _opt_obj(message, "quote", path)
    if quote is None:
        return None
    where = f"{path}.quote"
    return Quote(
        id=_req_int(quote, "id", where),
        author_uuid=_opt_str(quote, "authorUuid", where),
        author_number=_opt_str(quote, "authorNumber", where),
        text=_opt_str(quote, "text", where),
    )


def _reaction(raw: Mapping[str, Any], path: str) -> Reaction:
    emoji = _opt_str(raw, "emoji", path)
    if not emoji:
        raise MalformedEnvelopeError(f"{path}.emoji is missing")
    return Reaction(
        emoji=emoji,
        target_author_uuid=_opt_str(raw, "targetAuthorUuid", path),
        target_author_number=_opt_str(raw, "targetAuthorNumber", path),
        target_sent_timestamp=_req_int(raw, "targetSentTimestamp", path),
        is_remove=_opt_bool(raw, "isRemove", path),
    )


def _group_id(message: Mapping[str, Any], path: str) -> str | None:
    info = _opt_obj(message, "groupInfo", path)
    return None if info is None else _opt_str(info, "groupId", f"{path}.groupInfo")


def _data_fields(message: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The fields a data message (or the data message inside an edit) contributes."""
    expires = _opt_int(message, "expiresInSeconds", path)
    return {
        "text": _opt_str(message, "message", path),
        "mentions": _mentions(message, path),
        "quote": _quote(message, path),
        "group_id": _group_id(message, path),
        "expires_in_seconds": expires or 0,
        "attachment_count": len(_opt_list(message, "attachments", path)),
    }


def _receipt(raw: Mapping[str, Any], path: str) -> Receipt:
    if _opt_bool(raw, "isDelivery", path):
        kind = "delivery"
    elif _opt_bool(raw, "isRead", path):
        kind = "read"
    elif _opt_bool(raw, "isViewed", path):
        kind = "viewed"
    else:
        kind = "unknown"
    stamps = _opt_list(raw, "timestamps", path)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in stamps):
        raise MalformedEnvelopeError(f"{path}.timestamps has an item that is not an integer")
    return Receipt(type=kind, when=_opt_int(raw, "when", path), timestamps=tuple(stamps))


def _content(env: Mapping[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 - one return per kind
    """Kind and kind-specific fields; kind UNKNOWN when no part we know is present."""
    data = _opt_obj(env, "dataMessage", "envelope")
    if data is not None:
        path = "envelope.dataMessage"
        fields = _data_fields(data, path)
        reaction = _opt_obj(data, "reaction", path)
        if reaction is not None:
            return {**fields, "kind": EnvelopeKind.REACTION,
                    "reaction": _reaction(reaction, f"{path}.reaction")}
        delete = _opt_obj(data, "remoteDelete", path)
        if delete is not None:
            return {**fields, "kind": EnvelopeKind.DELETE,
                    "target_timestamp": _req_int(delete, "timestamp", f"{path}.remoteDelete")}
        return {**fields, "kind": EnvelopeKind.DATA}
    edit = _opt_obj(env, "editMessage", "envelope")
    if edit is not None:
        path = "envelope.editMessage"
        inner = _opt_obj(edit, "dataMessage", path)
        fields = {} if inner is None else _data_fields(inner, f"{path}.dataMessage")
        return {**fields, "kind": EnvelopeKind.EDIT,
                "target_timestamp": _req_int(edit, "targetSentTimestamp", path)}
    if _opt_obj(env, "syncMessage", "envelope") is not None:
        return {"kind": EnvelopeKind.SYNC}
    receipt = _opt_obj(env, "receiptMessage", "envelope")
    if receipt is not None:
        return {"kind": EnvelopeKind.RECEIPT,
                "receipt": _receipt(receipt, "envelope.receiptMessage")}
    typing = _opt_obj(env, "typingMessage", "envelope")
    if typing is not None:
        path = "envelope.typingMessage"
        return {"kind": EnvelopeKind.TYPING, "typing_action": _opt_str(typing, "action", path),
                "group_id": _opt_str(typing, "groupId", path)}
    story = _opt_obj(env, "storyMessage", "envelope")
    if story is not None:
        return {"kind": EnvelopeKind.STORY,
                "group_id": _opt_str(story, "groupId", "envelope.storyMessage")}
    if _opt_obj(env, "callMessage", "envelope") is not None:
        return {"kind": EnvelopeKind.CALL}
    return {"kind": EnvelopeKind.UNKNOWN}


# --------------------------------------------------------------------------- public


def parse_envelope(
    env: object, *, account: str | None = None, error_type: str | None = None
) -> Envelope:
    """Parse one `envelope` object strictly; raise MalformedEnvelopeError when it is not
    what signal-cli sends. Kind UNKNOWN when it carries nothing we know."""
    if not isinstance(env, Mapping):
        raise MalformedEnvelopeError("envelope is not an object")
    device = _opt_int(env, "sourceDevice", "envelope")
    return Envelope(
        timestamp=_req_int(env, "timestamp", "envelope"),
        source_uuid=_opt_str(env, "sourceUuid", "envelope"),
        source_number=_opt_str(env, "sourceNumber", "envelope"),
        source_device=device,
        account=account,
        error_type=error_type,
        **_content(env),
    )


def parse_receive_payload(payload: object) -> Envelope | None:
    """Parse a receive payload `{"account", "envelope"[, "exception"]}`.

    Returns None, after one sanitised log line, for anything that is malformed, carries no
    envelope, or is of a kind we do not know. Never raises for bad input.
    """
    if not isinstance(payload, Mapping):
        _skipped("not_an_object", error=type(payload).__name__)
        return None
    try:
        account = _opt_str(payload, "account", "payload")
        exception = _opt_obj(payload, "exception", "payload")
        error_type = None
        if exception is not None:
            error_type = _opt_str(exception, "type", "payload.exception")
        raw = payload.get("envelope")
        if raw is None:
            _skipped("no_envelope", error=error_type)
            return None
        envelope = parse_envelope(raw, account=account, error_type=error_type)
    except MalformedEnvelopeError as exc:
        _skipped("malformed_envelope", error=type(exc).__name__, field=_field_of(exc))
        return None
    except RecursionError as exc:
        _skipped("malformed_envelope", error=type(exc).__name__)
        return None
    if envelope.kind is EnvelopeKind.UNKNOWN:
        _skipped("receive_error" if error_type else "unknown_kind", error=error_type,
                 kind=EnvelopeKind.UNKNOWN.value)
        return None
    return envelope


def decode_json(text: str | bytes) -> Any:
    """`json.loads` that turns every way hostile input can fail into ValueError."""
    try:
        return json.loads(text)
    except RecursionError as exc:  # deeply nested arrays or objects
        raise ValueError("JSON nested too deeply") from exc


def parse_receive_json(text: str | bytes) -> Envelope | None:
    """Parse the JSON text of a receive payload (an SSE `data:` field); None if unusable."""
    try:
        payload = decode_json(text)
    except ValueError as exc:
        _skipped("malformed_json", error=type(exc).__name__, length=len(text))
        return None
    return parse_receive_payload(payload)


def _field_of(exc: MalformedEnvelopeError) -> str:
    # The message starts with the dotted field path we wrote ourselves, never a value.
    return str(exc).split(" ", 1)[0]


def _skipped(reason: str, **fields: object) -> None:
    extra = {key: value for key, value in fields.items() if value is not None}
    log.warning("signal_event_skipped", extra={"reason": reason, **extra})
