"""Fuzzing what signal-cli sends: receive payloads and envelopes, JSON-RPC replies over HTTP
and over a real socket, and the SSE framing of the events stream.

The properties: nothing from the daemon can raise anything but our own SignalError, the
transport stays usable after garbage, no message text or phone number reaches a log line,
and the SSE reader gives the same events however the bytes are cut into chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from typing import Any

import httpx
from hypothesis import example, given
from hypothesis import strategies as st

from agent.signal.batch import Call, batch_outcomes, result_of
from agent.signal.client import HttpTransport, SocketTransport
from agent.signal.envelope import Envelope, parse_receive_json, parse_receive_payload
from agent.signal.errors import SignalError, error_from_rpc
from agent.signal.sse import LineSplitter, OverlongLine, SSEEvent, SSEParser
from agent.testing.signal_daemon import (
    ALICE_NUMBER,
    ALICE_UUID,
    BOT_NUMBER,
    direct_message,
    group_message,
    reaction_message,
)
from tests.fuzz import fuzz, rendered_logs
from tests.leak_check import secrets_in

SECRET_TEXT = "fuzzed private question 7781"
"""Message text planted in generated envelopes: it must never reach a log line."""

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=20) | st.sampled_from([SECRET_TEXT, ALICE_NUMBER, ALICE_UUID,
                                                     "", "\u2028", "\x00", "dataMessage"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12) | st.sampled_from(
                               ["timestamp", "message", "sourceUuid", "groupInfo", "id",
                                "result", "error", "code", "data", "response", "results",
                                "type", "envelope", "account"]), inner, max_size=4),
                           max_leaves=20)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _valid_envelopes() -> list[dict[str, Any]]:
    return [direct_message(SECRET_TEXT, quote=(1, ALICE_UUID, ALICE_NUMBER, SECRET_TEXT)),
            group_message(SECRET_TEXT + " \ufffc", mentions=[(ALICE_UUID, ALICE_NUMBER)]),
            reaction_message("👍", target_timestamp=5),
            direct_message(SECRET_TEXT, attachments=2)]


@st.composite
def mutated_payloads(draw: st.DrawFn) -> Any:
    """A real receive payload with a few fields replaced by any JSON value or removed."""
    payload: Any = {"account": BOT_NUMBER,
                    "envelope": copy.deepcopy(draw(st.sampled_from(_valid_envelopes())))}
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(payload)
        path = draw(st.sampled_from(paths))
        if not path:
            payload = draw(json_values)
            continue
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return payload


def _no_leak(lines: list[str]) -> None:
    leaks = [(found, line) for line in lines if (found := secrets_in(line, [SECRET_TEXT]))]
    assert not leaks, leaks[:3]


@fuzz()
@given(mutated_payloads() | json_values)
@example({"account": BOT_NUMBER, "envelope": {"timestamp": 1, "dataMessage": [[[[]]]]}})
def test_any_receive_payload_is_parsed_or_skipped_quietly(payload: Any) -> None:
    with rendered_logs() as lines:
        result = parse_receive_payload(payload)
    assert result is None or isinstance(result, Envelope)
    _no_leak(lines)


@fuzz()
@given(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), mutated_payloads())
       | st.integers(1, 50_000).map(lambda n: b'{"envelope":' + b"[" * n))
def test_any_sse_data_field_is_parsed_or_skipped_quietly(data: bytes) -> None:
    with rendered_logs() as lines:
        result = parse_receive_json(data)
    assert result is None or isinstance(result, Envelope)
    _no_leak(lines)


# --- JSON-RPC replies -------------------------------------------------------------------


@fuzz()
@given(json_values, st.integers(1, 5))
def test_any_reply_object_gives_a_result_or_a_signal_error(reply: Any, request_id: int) -> None:
    failure = ""
    try:
        result_of(reply, request_id, "send")
    except SignalError as exc:
        failure = str(exc)
    assert not secrets_in(failure, [SECRET_TEXT]), "str(exc) never holds daemon text"
    error = error_from_rpc(reply, method="send")
    assert isinstance(error, SignalError)
    assert not secrets_in(str(error), [SECRET_TEXT])


@fuzz()
@given(json_values | st.lists(json_values | st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "id": st.integers(1, 4) | json_values,
     "result": json_values}), max_size=6), st.integers(1, 4))
def test_any_reply_to_a_batch_gives_each_call_a_result_or_a_signal_error(
        reply: Any, calls: int) -> None:
    """A daemon's answer to a batch (an array in any order, one error object, or garbage):
    one outcome per call, each a result or our own error without the daemon's text."""
    batch = [Call("send", {"message": SECRET_TEXT}) for _ in range(calls)]
    outcomes = batch_outcomes(reply, list(range(1, calls + 1)), batch)
    assert len(outcomes) == calls
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, SignalError)
            assert not secrets_in(str(outcome), [SECRET_TEXT])


reply_bodies = (st.binary(max_size=200)
                | st.builds(lambda v: json.dumps(v).encode(), json_values)
                | st.builds(lambda code, msg, data: json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": msg,
                                                          "data": data}}).encode(),
                            st.integers(-40000, 10) | json_values,
                            st.sampled_from([SECRET_TEXT, f"The user {ALICE_NUMBER} is not "
                                             "registered."]) | json_values, json_values))


@fuzz()
@given(st.sampled_from([200, 200, 200, 201, 400, 404, 415, 500, 502]), reply_bodies)
def test_any_http_rpc_reply_gives_a_result_or_a_signal_error(status: int, body: bytes) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body,
                              headers={"Content-Type": "application/json"})

    async def call() -> str:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        transport = HttpTransport("http://daemon.invalid", client=client)
        try:
            await transport.call("listGroups")
        except SignalError as exc:
            return str(exc)
        finally:
            await transport.aclose()
            await client.aclose()
        return ""

    with rendered_logs() as lines:
        failure = asyncio.run(call())
    assert not secrets_in(failure, [SECRET_TEXT])
    _no_leak(lines)


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


socket_garbage = st.lists(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))
    | json_values.map(_line)
    | mutated_payloads().map(lambda p: _line({"jsonrpc": "2.0", "method": "receive",
                                              "params": p}))
    | mutated_payloads().map(lambda p: _line({"jsonrpc": "2.0", "method": "receive",
                                              "params": {"subscription": 0, "result": p}})),
    max_size=6)


async def _daemon(garbage: list[bytes]) -> tuple[asyncio.Server, int]:
    """A loopback JSON-RPC daemon: garbage lines before its reply to `listGroups`, clean
    replies otherwise."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            if request["method"] == "listGroups":
                writer.write(b"".join(item + b"\n" for item in garbage))
            result = "ok-" + request["method"]
            writer.write(_line({"jsonrpc": "2.0", "id": request["id"], "result": result})
                         + b"\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _garbage_then_version(transport: Any, server: asyncio.Server, *,
                                tries: int) -> tuple[str, Any]:
    """`listGroups` (whose reply is the garbage: any result, or our error's text), then
    `version` (up to `tries` times); the transport and the server are closed after."""
    failure = ""
    try:
        try:  # a garbage line may be taken for the reply: any result, or our error
            await transport.call("listGroups")
        except SignalError as exc:
            failure = str(exc)
        for _ in range(tries - 1):
            with contextlib.suppress(SignalError):
                return failure, await transport.call("version")
        return failure, await transport.call("version")
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


@fuzz(0.5)
@given(socket_garbage)
def test_socket_transport_survives_any_lines_and_keeps_answering(garbage: list[bytes]) -> None:
    async def run() -> tuple[str, Any]:
        server, port = await _daemon(garbage)
        transport = SocketTransport(host="127.0.0.1", port=port, receive_mode="on-start",
                                    timeout=5)
        return await _garbage_then_version(transport, server, tries=1)

    with rendered_logs() as lines:
        failure, after = asyncio.run(run())
    assert not secrets_in(failure, [SECRET_TEXT])
    assert after == "ok-version", "the transport is still usable after the garbage"
    _no_leak(lines)


# --- SSE framing ------------------------------------------------------------------------


def _parse(chunks: list[bytes], max_bytes: int) -> list[SSEEvent | str]:
    splitter, parser = LineSplitter(max_bytes), SSEParser()
    out: list[SSEEvent | str] = []
    for chunk in chunks:
        for line in splitter.feed(chunk):
            if isinstance(line, OverlongLine):
                out.append(f"overlong {line.length}")
                assert line.length > max_bytes
            else:
                assert len(line) <= max_bytes
            event = parser.feed(line)
            if event is not None:
                out.append(event)
    return out


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


sse_bytes = st.lists(st.sampled_from([b"data:", b"data: ", b"event:receive", b"event:", b":",
                                      b"id:", b"id:\x00", b"retry:5", b"\n", b"\r\n", b"\r",
                                      b"x" * 40, "é".encode(), b"\xff", b"{}", b" "])
                     | st.binary(max_size=10), max_size=60).map(b"".join)


@fuzz()
@given(sse_bytes, st.lists(st.integers(0, 10_000), max_size=12), st.integers(1, 64))
def test_sse_events_do_not_depend_on_how_the_stream_is_chunked(
        data: bytes, cuts: list[int], max_bytes: int) -> None:
    assert _parse(_cut(data, cuts), max_bytes) == _parse([data], max_bytes)


field_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"),
                     max_size=30).filter(lambda t: not t.startswith(" "))


@fuzz()
@given(st.lists(st.tuples(st.sampled_from(["receive", "other"]),
                          st.lists(field_text, min_size=1, max_size=3)), max_size=5),
       st.lists(st.integers(0, 10_000), max_size=8), st.booleans())
def test_sse_events_written_as_the_daemon_writes_them_are_read_back(
        events: list[tuple[str, list[str]]], cuts: list[int], crlf: bool) -> None:
    end = b"\r\n" if crlf else b"\n"
    stream = b"".join(b":" + end + f"event:{name}".encode() + end
                      + b"".join(b"data:" + line.encode() + end for line in data) + end
                      for name, data in events)
    parsed = _parse(_cut(stream, cuts), 4096)
    expected = [SSEEvent(name, "\n".join(data)) for name, data in events]
    assert parsed == expected


http_heads = st.sampled_from([
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"HTTP/1.1 502 Bad Gateway\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 999 \r\n",
    b"HTTP/9 200 OK\r\n",
    b"",
])


@fuzz(0.5)
@given(http_heads, st.sampled_from([None, 0, 3, 10_000]), reply_bodies, st.binary(max_size=40),
       st.integers(1, 64))
def test_http_transport_survives_any_reply_bytes_and_keeps_answering(
    head: bytes, length: int | None, body: bytes, junk: bytes, cut: int,
) -> None:
    """Raw bytes for the reply to a JSON-RPC POST, cut into pieces, over a real socket to
    the plain-HTTP pool: a result or our own error, and the next call still works."""
    declared = b"" if length is None else b"Content-Length: %d\r\n" % (
        len(body) if length == 0 else length)
    raw = head + declared + b"\r\n" + body + junk

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_bytes = await reader.readuntil(b"\r\n\r\n")
        size = int(head_bytes.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        request = json.loads(await reader.readexactly(size))
        if request["method"] == "listGroups":
            for start in range(0, len(raw), cut):
                writer.write(raw[start:start + cut])
                await writer.drain()
            writer.close()
            return
        reply = _line({"jsonrpc": "2.0", "id": request["id"], "result": "ok"})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply) + reply)
        await writer.drain()
        writer.close()

    async def run() -> tuple[str, Any]:
        server = await asyncio.start_server(session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = HttpTransport(f"http://127.0.0.1:{port}", timeout=5)
        # The first `version` may go out on the connection the garbage came on, just closed.
        return await _garbage_then_version(transport, server, tries=2)

    with rendered_logs() as lines:
        failure, after = asyncio.run(run())
    assert not secrets_in(failure, [SECRET_TEXT])
    assert after == "ok", "the transport is usable again after the garbage"
    _no_leak(lines)
