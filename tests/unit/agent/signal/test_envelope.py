"""Parsing what signal-cli sends: envelopes of every kind, hostile input, and the other
wire-level readers (SSE lines, send results, error replies, backoff) of agent.signal.

Hostile input must be skipped with one log line that holds no message text and no phone
number; hypothesis throws arbitrary JSON at the parser to show it never raises.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.signal import (
    Backoff,
    Envelope,
    EnvelopeKind,
    SignalCaptchaRequired,
    SignalInvalidParams,
    SignalNetworkError,
    SignalProtocolError,
    SignalRateLimited,
    SignalRpcError,
    SignalUnregistered,
    SignalUntrustedIdentity,
    error_from_rpc,
    parse_receive_json,
    parse_receive_payload,
    parse_send_result,
)
from agent.signal.sse import LineSplitter, OverlongLine, SSEEvent, SSEParser
from agent.testing.signal_daemon import (
    ALICE_NUMBER,
    ALICE_UUID,
    BOB_UUID,
    BOT_NUMBER,
    BOT_UUID,
    GROUP_ID,
    call_message,
    delete_message,
    direct_message,
    edit_message,
    group_message,
    reaction_message,
    receipt_message,
    story_message,
    sync_sent_message,
    typing_message,
)

SECRET_TEXT = "my secret question about the tax office"
SECRET_NUMBER = "+15559876543"

# A data message exactly as signal-cli 0.13.19 prints it (field order and nulls included).
REAL_DIRECT = (
    '{"envelope":{"source":"+15550001001","sourceNumber":"+15550001001",'
    '"sourceUuid":"a11ce000-0000-4000-8000-000000000001","sourceName":"Alice",'
    '"sourceDevice":1,"timestamp":1700000000123,"serverReceivedTimestamp":1700000000200,'
    '"serverDeliveredTimestamp":1700000000250,"dataMessage":{"timestamp":1700000000123,'
    '"message":"What is the opening time?","expiresInSeconds":3600,"viewOnce":false}},'
    '"account":"+15550001000"}'
)


def payload(env: dict[str, Any], account: str = BOT_NUMBER) -> dict[str, Any]:
    return {"account": account, "envelope": env}


def parse(env: dict[str, Any]) -> Envelope:
    parsed = parse_receive_payload(payload(env))
    assert parsed is not None
    return parsed


def assert_logs_are_clean(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """Every record is an event name with fields; none carries text or numbers."""
    standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
    for record in caplog.records:
        fields = {k: v for k, v in record.__dict__.items() if k not in standard}
        rendered = record.getMessage() + repr(fields)
        for secret in (SECRET_TEXT, SECRET_NUMBER, *secrets):
            assert secret not in rendered, f"log leaks content: {rendered}"


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.signal")


# --------------------------------------------------------------------------- every kind


def test_real_direct_message_json() -> None:
    env = parse_receive_json(REAL_DIRECT)
    assert env == Envelope(
        kind=EnvelopeKind.DATA, timestamp=1700000000123, source_uuid=ALICE_UUID,
        source_number=ALICE_NUMBER, source_device=1, account=BOT_NUMBER,
        text="What is the opening time?", expires_in_seconds=3600,
    )
    assert not env.is_group


def test_direct_message_with_hidden_number_quote_and_attachments() -> None:
    env = parse(direct_message(
        "and this?", source_number=None, quote=(1700000000001, BOT_UUID, None, "earlier answer"),
        attachments=2,
    ))
    assert env.kind is EnvelopeKind.DATA
    assert env.source_number is None and env.source_uuid == ALICE_UUID
    assert env.quote is not None
    assert (env.quote.id, env.quote.author_uuid, env.quote.author_number, env.quote.text) == (
        1700000000001, BOT_UUID, None, "earlier answer")
    assert env.attachment_count == 2


def test_group_message_with_mentions_at_the_placeholders() -> None:
    text = "👋 \ufffc can you ask \ufffc?"
    env = parse(group_message(text, mentions=[(BOT_UUID, BOT_NUMBER), (BOB_UUID, None)],
                              expires_in_seconds=604800))
    assert env.kind is EnvelopeKind.DATA and env.is_group and env.group_id == GROUP_ID
    assert env.text == text
    assert [(m.uuid, m.number, m.start, m.length) for m in env.mentions] == [
        (BOT_UUID, BOT_NUMBER, 3, 1),  # the emoji is two UTF-16 units, as Signal counts
        (BOB_UUID, None, 17, 1),
    ]
    assert env.expires_in_seconds == 604800


@pytest.mark.parametrize("remove", [False, True])
def test_reaction(remove: bool) -> None:
    env = parse(reaction_message("👍", target_timestamp=1700000000077, is_remove=remove,
                                 group_id=GROUP_ID))
    assert env.kind is EnvelopeKind.REACTION
    assert env.reaction is not None
    assert env.reaction.emoji == "👍"
    assert env.reaction.target_author_uuid == BOT_UUID
    assert env.reaction.target_author_number == BOT_NUMBER
    assert env.reaction.target_sent_timestamp == 1700000000077
    assert env.reaction.is_remove is remove
    assert env.group_id == GROUP_ID


@pytest.mark.parametrize("kind", ["delivery", "read", "viewed"])
def test_receipt(kind: Any) -> None:
    env = parse(receipt_message([11, 12], receipt_type=kind))
    assert env.kind is EnvelopeKind.RECEIPT
    assert env.receipt is not None
    assert (env.receipt.type, env.receipt.timestamps) == (kind, (11, 12))
    assert env.receipt.when == env.timestamp


def test_typing_in_a_group() -> None:
    env = parse(typing_message("STOPPED", group_id=GROUP_ID))
    assert (env.kind, env.typing_action, env.group_id) == (
        EnvelopeKind.TYPING, "STOPPED", GROUP_ID)


def test_edit_keeps_new_text_and_target() -> None:
    env = parse(edit_message("fixed typo", target_timestamp=1700000000005, group_id=GROUP_ID))
    assert (env.kind, env.text, env.target_timestamp, env.group_id) == (
        EnvelopeKind.EDIT, "fixed typo", 1700000000005, GROUP_ID)


def test_remote_delete() -> None:
    env = parse(delete_message(1700000000009))
    assert (env.kind, env.target_timestamp, env.text) == (
        EnvelopeKind.DELETE, 1700000000009, None)


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: sync_sent_message("note to self"), EnvelopeKind.SYNC),
        (lambda: story_message(group_id=GROUP_ID), EnvelopeKind.STORY),
        (call_message, EnvelopeKind.CALL),
    ],
    ids=["sync", "story", "call"],
)
def test_other_kinds_are_recognised(build: Any, kind: EnvelopeKind) -> None:
    env = parse(build())
    assert env.kind is kind
    assert env.text is None  # their content is never read


def test_envelope_with_daemon_exception_keeps_the_error_class_only() -> None:
    env = parse_receive_payload({
        "account": BOT_NUMBER,
        "exception": {"message": f"Untrusted identity for {SECRET_NUMBER}",
                      "type": "UntrustedIdentityException"},
        "envelope": direct_message("hi"),
    })
    assert env is not None and env.error_type == "UntrustedIdentityException"


def test_payload_without_envelope_or_content_is_skipped_with_its_error_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exception = {"message": f"Failed to decrypt from {SECRET_NUMBER}",
                 "type": "ProtocolInvalidMessageException"}
    bare = {"source": SECRET_NUMBER, "sourceNumber": SECRET_NUMBER, "timestamp": 5}
    assert parse_receive_payload({"account": BOT_NUMBER, "exception": exception}) is None
    assert parse_receive_payload(
        {"account": BOT_NUMBER, "exception": exception, "envelope": bare}) is None
    reasons = [record.__dict__.get("reason") for record in caplog.records]
    assert reasons == ["no_envelope", "receive_error"]
    assert caplog.records[1].__dict__["error"] == "ProtocolInvalidMessageException"
    assert_logs_are_clean(caplog)


def test_unknown_kind_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    env = direct_message(SECRET_TEXT, source_number=SECRET_NUMBER)
    del env["dataMessage"]
    env["pollMessage"] = {"question": SECRET_TEXT}
    assert parse_receive_payload(payload(env)) is None
    assert caplog.records[-1].getMessage() == "signal_event_skipped"
    assert caplog.records[-1].__dict__["reason"] == "unknown_kind"
    assert_logs_are_clean(caplog)


# --------------------------------------------------------------------------- hostile input


def _with(path: list[str], value: Any) -> dict[str, Any]:
    env = direct_message(SECRET_TEXT, source_number=SECRET_NUMBER)
    target = env
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return env


@pytest.mark.parametrize(
    "env",
    [
        _with(["timestamp"], "1700000000000"),
        _with(["timestamp"], True),
        _with(["timestamp"], None),
        _with(["sourceUuid"], 42),
        _with(["sourceNumber"], [SECRET_NUMBER]),
        _with(["dataMessage"], SECRET_TEXT),
        _with(["dataMessage", "message"], {"text": SECRET_TEXT}),
        _with(["dataMessage", "expiresInSeconds"], "3600"),
        _with(["dataMessage", "mentions"], {"0": SECRET_NUMBER}),
        _with(["dataMessage", "mentions"], [SECRET_NUMBER]),
        _with(["dataMessage", "mentions"], [{"uuid": BOT_UUID, "start": "0", "length": 1}]),
        _with(["dataMessage", "quote"], {"text": SECRET_TEXT}),
        _with(["dataMessage", "reaction"], {"emoji": "", "targetSentTimestamp": 1}),
        _with(["dataMessage", "reaction"], {"emoji": "👍"}),
        _with(["dataMessage", "remoteDelete"], {"timestamp": SECRET_NUMBER}),
        _with(["dataMessage", "groupInfo"], {"groupId": 7}),
        _with(["dataMessage", "attachments"], SECRET_TEXT),
        {**receipt_message([1]), "receiptMessage": {"isRead": True, "timestamps": ["1"]}},
        {**typing_message(), "typingMessage": {"action": 1}},
        {**edit_message("x", target_timestamp=1), "editMessage": {"dataMessage": {}}},
    ],
)
def test_wrong_types_and_missing_fields_are_skipped_without_content(
    env: dict[str, Any], caplog: pytest.LogCaptureFixture,
) -> None:
    assert parse_receive_payload(payload(env, account=SECRET_NUMBER)) is None
    (record,) = caplog.records
    assert record.getMessage() == "signal_event_skipped"
    assert record.__dict__["reason"] == "malformed_envelope"
    assert record.__dict__["error"] == "MalformedEnvelopeError"
    assert record.__dict__["field"].startswith("envelope")
    assert_logs_are_clean(caplog)


@pytest.mark.parametrize(
    "text",
    [
        "", "garbage", f'{{"envelope": {{"message": "{SECRET_TEXT}"', f'"{SECRET_NUMBER}"',
        "[1, 2, 3]", "null", "NaN", "\x00\x01\x02", "{" * 50_000, "[" * 200_000 + "]" * 200_000,
        '{"envelope": 1' + "0" * 5000 + "}",  # past Python's int-digits limit
        b"\xff\xfe" + SECRET_TEXT.encode(),
    ],
    ids=["empty", "word", "truncated", "string", "list", "null", "nan", "control", "open-braces",
         "deep-nesting", "huge-int", "bad-utf8"],
)
def test_malformed_json_is_skipped_without_content(
    text: str | bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    assert parse_receive_json(text) is None
    assert len(caplog.records) == 1
    assert caplog.records[0].__dict__["reason"] in (
        "malformed_json", "not_an_object", "malformed_envelope", "no_envelope")
    assert_logs_are_clean(caplog)


def test_huge_text_is_kept_whole() -> None:
    big = "x" * 2_000_000
    env = parse_receive_json(json.dumps(payload(direct_message(big))))
    assert env is not None and env.text == big


def test_unicode_and_escapes_survive() -> None:
    text = "line\nbreak \u202e bidi \u0000 nul \U0001f600"
    env = parse_receive_json(json.dumps(payload(direct_message(text))))
    assert env is not None and env.text == text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
ENVELOPE_KEYS = st.sampled_from([
    "timestamp", "sourceUuid", "sourceNumber", "sourceDevice", "dataMessage", "editMessage",
    "syncMessage", "receiptMessage", "typingMessage", "storyMessage", "callMessage",
])
DATA_KEYS = st.sampled_from([
    "message", "mentions", "quote", "reaction", "remoteDelete", "groupInfo",
    "expiresInSeconds", "attachments", "timestamp",
])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json_never_raises(value: Any) -> None:
    for candidate in (value, {"account": BOT_NUMBER, "envelope": value}):
        result = parse_receive_payload(candidate)
        assert result is None or isinstance(result, Envelope)


@settings(max_examples=200, deadline=None)
@given(ENVELOPE_KEYS, DATA_KEYS, JSON, JSON)
def test_corrupted_real_envelopes_never_raise(
    env_key: str, data_key: str, env_value: Any, data_value: Any,
) -> None:
    env = group_message("hi \ufffc", mentions=[(BOT_UUID, BOT_NUMBER)])
    env["dataMessage"][data_key] = data_value
    env[env_key] = env_value
    result = parse_receive_payload(payload(env))
    assert result is None or isinstance(result, Envelope)


@settings(max_examples=200, deadline=None)
@given(st.text() | st.binary())
def test_arbitrary_text_never_raises(text: str | bytes) -> None:
    result = parse_receive_json(text)
    assert result is None or isinstance(result, Envelope)


# --------------------------------------------------------------------------- SSE lines


def feed_all(chunks: list[bytes], max_bytes: int = 1024) -> list[SSEEvent | str]:
    splitter, parser = LineSplitter(max_bytes), SSEParser()
    out: list[SSEEvent | str] = []
    for chunk in chunks:
        for line in splitter.feed(chunk):
            if isinstance(line, OverlongLine):
                out.append(f"overlong:{line.length}")
            event = parser.feed(line)
            if event is not None:
                out.append(event)
    return out


def test_sse_events_split_anywhere_and_keepalives_ignored() -> None:
    wire = b':\nevent:receive\ndata:{"a":1}\n\n:\n:\nevent: receive\r\ndata: x\r\ndata:y\r\n\r\n'
    expected = [SSEEvent("receive", '{"a":1}'), SSEEvent("receive", "x\ny")]
    assert feed_all([wire]) == expected
    assert feed_all([bytes([b]) for b in wire]) == expected


def test_sse_event_without_data_or_type() -> None:
    assert feed_all([b"event:receive\n\ndata:z\n\nid:7\n"]) == [SSEEvent("message", "z")]


def test_sse_overlong_line_drops_its_event_only() -> None:
    wire = b"event:receive\ndata:" + b"x" * 5000 + b"\n\nevent:receive\ndata:ok\n\n"
    assert feed_all([wire[i:i + 700] for i in range(0, len(wire), 700)]) == [
        "overlong:5005", SSEEvent("receive", "ok")]


# --------------------------------------------------------------------------- send results


def test_send_result_with_partial_failure() -> None:
    result = parse_send_result({"timestamp": 99, "results": [
        {"recipientAddress": {"uuid": ALICE_UUID, "number": ALICE_NUMBER}, "type": "SUCCESS"},
        {"recipientAddress": {"uuid": BOB_UUID, "number": None}, "groupId": GROUP_ID,
         "type": "RATE_LIMIT_FAILURE", "retryAfterSeconds": 120},
        "junk",
    ]})
    assert result.timestamp == 99 and result.partial and not result.ok
    assert [f.type for f in result.failures] == ["RATE_LIMIT_FAILURE", "UNKNOWN"]
    assert result.retry_after == 120 and result.captcha_token is None
    assert result.failures[0].group_id == GROUP_ID


@pytest.mark.parametrize("raw", [None, [], "x", {"timestamp": "1", "results": "x"}, {}])
def test_odd_send_results_are_empty(raw: Any) -> None:
    result = parse_send_result(raw)
    assert result.timestamp is None and result.results == () and result.ok


# --------------------------------------------------------------------------- error replies


def failed(*items: dict[str, Any]) -> dict[str, Any]:
    return {"response": {"timestamp": 5, "results": [
        {"recipientAddress": {"uuid": BOB_UUID, "number": SECRET_NUMBER}, **item}
        for item in items]}}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": -32602, "message": "Method requires valid account parameter"},
         SignalInvalidParams),
        ({"code": -5, "message": "Failed to send message due to rate limiting",
          "data": failed({"type": "RATE_LIMIT_FAILURE", "retryAfterSeconds": 30})},
         SignalRateLimited),
        ({"code": -5, "message": "rate", "data": failed(
            {"type": "RATE_LIMIT_FAILURE", "token": "tok", "retryAfterSeconds": 86400})},
         SignalCaptchaRequired),
        ({"code": -6, "message": "Captcha rejected"}, SignalCaptchaRequired),
        ({"code": -4, "message": "untrusted", "data": failed({"type": "IDENTITY_FAILURE"})},
         SignalUntrustedIdentity),
        ({"code": -1, "message": "Failed to send message",
          "data": failed({"type": "UNREGISTERED_FAILURE"})}, SignalUnregistered),
        ({"code": -1, "message": f"The user {SECRET_NUMBER} is not registered."},
         SignalUnregistered),
        ({"code": -1, "message": "Failed to send message",
          "data": failed({"type": "NETWORK_FAILURE"})}, SignalNetworkError),
        ({"code": -3, "message": "io"}, SignalNetworkError),
        ({"code": -32601, "message": "Method not implemented"}, SignalRpcError),
        ({"code": -32700, "message": "Unexpected end-of-input"}, SignalProtocolError),
        ({"code": "x"}, SignalRpcError),
        ("not an object", SignalProtocolError),
    ],
)
def test_error_replies_map_to_our_types(error: Any, expected: type[Exception]) -> None:
    exc = error_from_rpc(error, method="send")
    assert type(exc) is expected
    assert SECRET_NUMBER not in str(exc) and "send" in str(exc)


def test_rate_limit_error_keeps_retry_after_and_results() -> None:
    exc = error_from_rpc({"code": -5, "message": "m", "data": failed(
        {"type": "RATE_LIMIT_FAILURE", "retryAfterSeconds": 30})}, method="send")
    assert isinstance(exc, SignalRateLimited)
    assert (exc.retry_after, exc.code, exc.result is not None) == (30, -5, True)
    captcha = error_from_rpc({"code": -5, "message": "m", "data": failed(
        {"type": "RATE_LIMIT_FAILURE", "token": "tok", "retryAfterSeconds": 9})}, method="send")
    assert isinstance(captcha, SignalCaptchaRequired)
    assert (captcha.token, captcha.retry_after) == ("tok", 9)


# --------------------------------------------------------------------------- backoff


def test_backoff_grows_is_capped_and_jittered() -> None:
    low = Backoff(initial=1.0, cap=8.0, rng=lambda: 0.0)
    high = Backoff(initial=1.0, cap=8.0, rng=lambda: 1.0)
    assert [low.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert high.delay(10_000) == 8.0  # no overflow after a very long outage
