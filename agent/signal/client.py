"""Async clients for the signal-cli JSON-RPC daemon over HTTP or a socket (SIG-1, SIG-3).

Why our own: the Python Signal libraries (signalbot, pysignalclirestapi) target the
separate signal-cli-rest-api wrapper or a websocket, not the daemon's own JSON-RPC; none
reconnects forever with a stale-stream watchdog, re-subscribes in manual receive mode,
or keeps phone numbers and message text out of their logs.

`create_transport(url)` picks the implementation from the URL:

- `http://host:port`: `POST /api/v1/rpc` on a few kept-alive connections
  (`agent/signal/http_rpc.py`; over https:// on one reused `httpx.AsyncClient`), incoming
  messages from the `GET /api/v1/events` server-sent-event stream (an open stream is the
  subscriber, also in manual receive mode). The daemon sends a `:` keep-alive every 15 s
  and, on 0.13.19, its response headers only with the first one.
- `tcp://host:port`, `unix:///path`: newline-delimited JSON-RPC both ways on one
  connection. The daemon answers concurrent requests out of order (replies are matched
  by id) and sends incoming messages as `receive` notifications; in manual receive mode
  `subscribeReceive` is called again after every reconnect. A socket carries no
  keep-alive, so when it has been idle for half the watchdog interval the transport
  sends a `version` request as a ping and gives up if nothing arrives in the other half.

Typing indicators and read receipts made while others are under way go together as
JSON-RPC batches (`agent/signal/batch.py`, PERF-2); sends, reactions and `call` are never
batched (a batch times out as a whole, and a retried send would reach its user twice).

Every failure reaches callers as an agent.signal.errors type. Logs carry event names,
counts and error class names only: no message text, no phone numbers, no account.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from agent.signal.batch import (
    Call,
    CallBatcher,
    Outcome,
    batch_outcomes,
    failed_each,
    outcome,
    plain_id,
    result_of,
)
from agent.signal.envelope import Envelope, decode_json, parse_receive_json, parse_receive_payload
from agent.signal.errors import (
    SignalError,
    SignalNetworkError,
    SignalProtocolError,
    SignalTimeoutError,
    error_from_failures,
)
from agent.signal.http_rpc import RpcConnectionPool, pool_for_url
from agent.signal.reconnect import (
    Backoff,
    Clock,
    ConnectionState,
    Sleeper,
    StatusTracker,
    TransportStatus,
)
from agent.signal.results import SendResult, parse_send_result
from agent.signal.sse import DEFAULT_MAX_LINE_BYTES, LineSplitter, OverlongLine, SSEParser

log = logging.getLogger(__name__)

ReceiveMode = Literal["manual", "on-start"]
ReceiptType = Literal["read", "viewed"]

KEEPALIVE_INTERVAL = 15.0
"""signal-cli's SSE keep-alive period (measured: 15.00-15.12 s)."""
DEFAULT_STALE_AFTER = 35.0
"""Watchdog: reconnect when nothing arrived for this long (a bit over 2 keep-alives)."""
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
CHECK_TIMEOUT = 5.0
"""A reachability check gives up after this (or the call timeout if shorter), so a hung
daemon is reported as such by the unreachable monitor instead of holding it 30 s."""
RECEIVE_EVENT = "receive"
STALE_STREAM = "StaleStream"
"""`status.last_error` after the watchdog gave up on a silent connection."""
END_OF_STREAM = "EndOfStream"
"""`status.last_error` after the daemon closed the stream or socket cleanly."""


class SignalTransport(Protocol):
    """What the bot uses to talk to signal-cli, whatever the wire."""

    @property
    def status(self) -> TransportStatus:
        """Connection state and counters for health checks."""
        ...

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call a JSON-RPC method; `account` is added when configured. Returns `result`."""
        ...

    async def send(
        self, message: str, *, recipients: Sequence[str] = (), group_id: str | None = None,
        quote_timestamp: int | None = None, quote_author: str | None = None,
        quote_message: str | None = None, mentions: Sequence[str] = (),
        text_styles: Sequence[str] = (), edit_timestamp: int | None = None,
    ) -> SendResult: ...

    async def send_typing(
        self, *, recipient: str | None = None, group_id: str | None = None, stop: bool = False
    ) -> SendResult: ...

    async def send_receipt(
        self, recipient: str, timestamps: Sequence[int], *, receipt_type: ReceiptType = "read"
    ) -> SendResult: ...

    async def send_reaction(
        self, emoji: str, *, target_author: str, target_timestamp: int,
        recipient: str | None = None, group_id: str | None = None, remove: bool = False,
    ) -> SendResult: ...

    def events(self) -> AsyncIterator[Envelope]:
        """Incoming envelopes, forever: reconnects by itself. One reader at a time."""
        ...

    async def check(self) -> bool:
        """True when the daemon answers a JSON-RPC call right now (see `_BaseTransport`)."""
        ...

    async def aclose(self) -> None: ...


def mention(start: int, length: int, recipient: str) -> str:
    """The `mention` parameter format of `send`: `start:length:recipient`."""
    return f"{start}:{length}:{recipient}"


def text_style(start: int, length: int, style: str) -> str:
    """The `textStyle` parameter format: `start:length:STYLE` (BOLD, ITALIC, SPOILER,
    STRIKETHROUGH, MONOSPACE)."""
    return f"{start}:{length}:{style}"


class _BaseTransport:
    """Parameter handling and the thin send wrappers shared by both transports."""

    def __init__(
        self, *, account: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        stale_after: float = DEFAULT_STALE_AFTER, backoff: Backoff | None = None,
        sleep: Sleeper = asyncio.sleep, clock: Clock | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if stale_after <= 0 or timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.account = account
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.stale_after = stale_after
        self.backoff = backoff or Backoff()
        self.max_line_bytes = max_line_bytes
        self._sleep = sleep
        self._tracker = StatusTracker() if clock is None else StatusTracker(clock)
        self._ids = itertools.count(1)
        self._closed = False
        self._events_active = False
        self.check_error: str | None = None
        """Why the last `check` failed (None: it passed or none ran yet)."""
        self._batcher = CallBatcher(self._run_calls)

    @property
    def batch_requests(self) -> int:
        """Requests the send methods have made (each carries one call or a batch of
        receipts and typing indicators)."""
        return self._batcher.requests

    @property
    def status(self) -> TransportStatus:
        return self._tracker.snapshot()

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(params or {})
        if self.account is not None:
            merged.setdefault("account", self.account)
        return merged

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        if self._closed:
            raise SignalNetworkError("transport is closed", method=method)
        return await self._call(method, self._params(params))

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _call_batch(self, calls: Sequence[Call]) -> list[Outcome]:
        """Send two or more calls as one JSON-RPC batch; one outcome per call."""
        raise NotImplementedError

    async def _run_calls(self, calls: Sequence[Call]) -> list[Outcome]:
        """The batcher's way out: a lone call as a plain request (as without batching)."""
        if len(calls) > 1:
            return await self._call_batch(calls)
        [single] = calls
        try:
            return [await self._call(single.method, single.params)]
        except SignalError as exc:
            return [exc]

    async def check(self) -> bool:
        """The readiness probe: True when the daemon answers a JSON-RPC `version` call with
        a version within CHECK_TIMEOUT. Anything else is False with the reason, a
        content-free class name, in `check_error`: no answer (`Timeout`), an HTTP or
        protocol error, or a reply that is not a version (`NotAVersion`) — something that
        answers 200 with garbage in the daemon's place is not a reachable daemon."""
        self.check_error = await self._check_error()
        return self.check_error is None

    async def _check_error(self) -> str | None:
        if self._closed:
            return "Closed"
        try:  # `version` needs no account: the plain call, not `call`
            result = await asyncio.wait_for(self._call("version", {}),
                                            min(self.timeout, CHECK_TIMEOUT))
        except TimeoutError:
            return "Timeout"
        except SignalError as exc:
            return type(exc).__name__
        if not (isinstance(result, dict) and isinstance(result.get("version"), str)):
            return "NotAVersion"
        return None

    async def _send_call(self, method: str, params: dict[str, Any]) -> SendResult:
        if self._closed:
            raise SignalNetworkError("transport is closed", method=method)
        reply = await self._batcher.call(Call(method, self._params(params)))
        result = parse_send_result(reply)
        failures = result.failures
        if failures:
            if not any(item.ok for item in result.results):
                error = error_from_failures(result, method=method)
                assert error is not None
                raise error
            log.warning("signal_send_partial", extra={
                "method": method, "delivered": len(result.results) - len(failures),
                "failed": len(failures),
                "failure_types": sorted({item.type for item in failures}),
            })
        return result

    @staticmethod
    def _target(recipient: str | Sequence[str] | None, group_id: str | None) -> dict[str, Any]:
        if (not recipient) == (group_id is None):
            raise ValueError("give exactly one of recipient(s) or group_id")
        if group_id is not None:
            return {"groupId": group_id}
        assert recipient is not None
        return {"recipient": [recipient] if isinstance(recipient, str) else list(recipient)}

    async def send(
        self, message: str, *, recipients: Sequence[str] = (), group_id: str | None = None,
        quote_timestamp: int | None = None, quote_author: str | None = None,
        quote_message: str | None = None, mentions: Sequence[str] = (),
        text_styles: Sequence[str] = (), edit_timestamp: int | None = None,
    ) -> SendResult:
        """Send a text; quote with `quote_timestamp` + `quote_author` (+ `quote_message`)."""
        if isinstance(recipients, str):
            raise TypeError("recipients is a sequence of numbers or UUIDs, not a string")
        params: dict[str, Any] = {**self._target(recipients, group_id), "message": message}
        if quote_timestamp is not None:
            if quote_author is None:
                raise ValueError("quote_author is required with quote_timestamp")
            params["quoteTimestamp"] = quote_timestamp
            params["quoteAuthor"] = quote_author
            if quote_message is not None:
                params["quoteMessage"] = quote_message
        if mentions:
            params["mention"] = list(mentions)
        if text_styles:
            params["textStyle"] = list(text_styles)
        if edit_timestamp is not None:
            params["editTimestamp"] = edit_timestamp
        return await self._send_call("send", params)

    async def send_typing(
        self, *, recipient: str | None = None, group_id: str | None = None, stop: bool = False
    ) -> SendResult:
        params = {**self._target(recipient, group_id), "stop": stop}
        return await self._send_call("sendTyping", params)

    async def send_receipt(
        self, recipient: str, timestamps: Sequence[int], *, receipt_type: ReceiptType = "read"
    ) -> SendResult:
        params = {"recipient": recipient, "targetTimestamp": list(timestamps),
                  "type": receipt_type}
        return await self._send_call("sendReceipt", params)

    async def send_reaction(
        self, emoji: str, *, target_author: str, target_timestamp: int,
        recipient: str | None = None, group_id: str | None = None, remove: bool = False,
    ) -> SendResult:
        params = {**self._target(recipient, group_id), "emoji": emoji,
                  "targetAuthor": target_author, "targetTimestamp": target_timestamp,
                  "remove": remove}
        return await self._send_call("sendReaction", params)

    def _claim_events(self) -> None:
        if self._events_active:
            raise RuntimeError("events() is already being read; use one reader")
        self._events_active = True

    async def _backoff_sleep(self) -> None:
        delay = self.backoff.delay(max(self._tracker.failed_attempts, 1))
        log.info("signal_reconnect_scheduled", extra={
            "delay_s": round(delay, 3), "attempt": self._tracker.failed_attempts,
            "error": self._tracker.last_error,
        })
        await self._sleep(delay)


def _rpc_body(method: str, params: Mapping[str, Any], request_id: int) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params:
        body["params"] = params
    return body


# --------------------------------------------------------------------------- HTTP


class _StaleStreamError(Exception):
    """Nothing, not even a keep-alive, arrived within the watchdog interval."""


class _StreamEndedError(Exception):
    """The daemon ended the event stream cleanly (what a graceful shutdown looks like)."""


MAX_HTTP_CONNECTIONS = 8
"""httpx's pool: the event stream's connection (and requests over https://)."""
MAX_RPC_CONNECTIONS = 8
"""JSON-RPC connections to an http:// daemon: it answers in milliseconds, so a few keep
it busy (sends go one per request, receipts and typing indicators batched)."""


class HttpTransport(_BaseTransport):
    """JSON-RPC over `POST /api/v1/rpc`, events from `GET /api/v1/events` (SSE)."""

    def __init__(self, base_url: str, *, client: httpx.AsyncClient | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self.base_url = base_url.rstrip("/")
        # trust_env=False: never route the loopback daemon through an HTTP(S)_PROXY.
        # httpx carries the event stream (and every request over https:// or through an
        # injected client); JSON-RPC calls to an http:// daemon go through the leaner
        # pool of http_rpc.py (PERF-2).
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=MAX_HTTP_CONNECTIONS,
                                max_keepalive_connections=MAX_HTTP_CONNECTIONS),
            trust_env=False)
        self._owns_client = client is None
        self._rpc: RpcConnectionPool | None = None if client is not None else pool_for_url(
            self.base_url, rpc_path="/api/v1/rpc", max_connections=MAX_RPC_CONNECTIONS,
            timeout=self.timeout, connect_timeout=self.connect_timeout,
            max_body_bytes=self.max_line_bytes)

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        return result_of(await self._post(_rpc_body(method, params, request_id), method),
                         request_id, method)

    async def _call_batch(self, calls: Sequence[Call]) -> list[Outcome]:
        ids = [next(self._ids) for _ in calls]
        body = [_rpc_body(call.method, call.params, request_id)
                for call, request_id in zip(calls, ids, strict=True)]
        try:
            reply = await self._post(body, "batch")
        except SignalError as exc:
            return failed_each(exc, calls)
        return batch_outcomes(reply, ids, calls)

    async def _post(self, body: object, method: str) -> object:
        """POST a request or a batch; the decoded reply, or the mapped SignalError."""
        if self._rpc is not None:
            # As httpx encodes `json=`: UTF-8, compact, no NaN.
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()
            status, content = await self._rpc.post(data, method=method)
        else:
            status, content = await self._post_httpx(body, method)
        if status in (502, 503, 504):
            raise SignalNetworkError(f"HTTP {status}", method=method)
        if status != 200:
            raise SignalProtocolError(f"HTTP {status}", method=method)
        try:
            reply: object = decode_json(content)
        except ValueError as exc:
            raise SignalProtocolError("reply is not JSON", method=method) from exc
        return reply

    async def _post_httpx(self, body: object, method: str) -> tuple[int, bytes]:
        try:
            response = await self._client.post(
                f"{self.base_url}/api/v1/rpc", json=body,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout))
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SignalNetworkError("daemon unreachable", method=method) from exc
        except httpx.TimeoutException as exc:
            raise SignalTimeoutError("no reply in time", method=method) from exc
        except httpx.TransportError as exc:
            raise SignalNetworkError("daemon unreachable", method=method) from exc
        return response.status_code, response.content

    async def events(self) -> AsyncIterator[Envelope]:
        self._claim_events()
        try:
            while not self._closed:
                established = False
                stale = False
                error: BaseException | str = END_OF_STREAM
                self._tracker.connecting()
                try:
                    async with contextlib.aclosing(self._read_stream()) as stream:
                        async for item in stream:
                            if item is None:
                                established = True
                                self._tracker.connected()
                                log.info("signal_connected", extra={"transport": "http"})
                            else:
                                yield item
                except _StaleStreamError:
                    error, stale = STALE_STREAM, True
                except _StreamEndedError:
                    error = END_OF_STREAM
                except Exception as exc:  # noqa: BLE001 - the receive loop must never die (SIG-3)
                    error = exc
                if self._closed:
                    break
                if established:
                    self._tracker.lost(error, stale=stale)
                    log.warning("signal_disconnected", extra={
                        "transport": "http", "error": self._tracker.last_error,
                        "stale": stale})
                else:
                    self._tracker.failed(error)
                    log.warning("signal_connect_failed", extra={
                        "transport": "http", "error": self._tracker.last_error})
                await self._backoff_sleep()
        finally:
            self._events_active = False

    async def _read_stream(self) -> AsyncGenerator[Envelope | None, None]:
        """One stream: yields None once connected, then envelopes; raises when it ends."""
        params = {"account": self.account} if self.account is not None else None
        request = self._client.build_request(
            "GET", f"{self.base_url}/api/v1/events", params=params,
            headers={"Accept": "text/event-stream"},
            # The watchdog below is the real limit; this read timeout only backs it up.
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout,
                                  read=self.stale_after + self.connect_timeout))
        async with asyncio.timeout(self.stale_after):
            # 0.13.19 sends the status line only with the first keep-alive, after 15 s.
            response = await self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise SignalProtocolError(f"events HTTP {response.status_code}")
            self._tracker.activity()
            yield None
            splitter = LineSplitter(self.max_line_bytes)
            parser = SSEParser()
            chunks = response.aiter_bytes()
            while not self._closed:
                try:
                    async with asyncio.timeout(self.stale_after):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    raise _StreamEndedError from None
                except TimeoutError:
                    raise _StaleStreamError from None
                self._tracker.activity()
                self._tracker.healthy()
                for line in splitter.feed(chunk):
                    if isinstance(line, OverlongLine):
                        log.warning("signal_event_skipped", extra={
                            "reason": "line_too_long", "length": line.length})
                    event = parser.feed(line)
                    if event is None:
                        continue
                    if event.event != RECEIVE_EVENT:
                        log.warning("signal_event_skipped", extra={
                            "reason": "unknown_event_type", "length": len(event.data)})
                        continue
                    envelope = parse_receive_json(event.data)
                    if envelope is not None:
                        yield envelope
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._batcher.close()
        self._tracker.closed()
        if self._rpc is not None:
            self._rpc.close()
        if self._owns_client:
            await self._client.aclose()


# --------------------------------------------------------------------------- sockets


class _Connection:
    """One socket to the daemon and the replies it still owes us."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int | str, asyncio.Future[Any]] = {}
        self.batched: set[int | str] = set()
        """Ids in `pending` sent in a batch (a null-id error may concern them)."""
        self.subscription: int | None = None
        self._write_lock = asyncio.Lock()

    async def write(self, message: Mapping[str, Any] | list[dict[str, Any]]) -> None:
        # ensure_ascii: the daemon's line reader must never see a raw line separator.
        line = json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"
        async with self._write_lock:
            self.writer.write(line)
            await self.writer.drain()

    def fail_pending(self, error: SignalError) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self.writer.wait_closed()


class SocketTransport(_BaseTransport):
    """Newline-delimited JSON-RPC over TCP or a Unix socket, one connection, kept open.

    A background task owns the connection: it connects, reconnects forever with backoff,
    reads every line, resolves pending calls by id and queues incoming envelopes (without
    a bound: a full queue would stall the reader and with it the replies the consumer may
    be waiting for; the bot hands each envelope to its durable inbox at once). In
    manual receive mode it calls `subscribeReceive` on every connection once `events()`
    has been asked for, and not before: a subscriber that nobody reads would make the
    daemon fetch (and Signal's servers drop) messages that then get lost.
    """

    def __init__(self, *, host: str | None = None, port: int | None = None,
                 path: str | None = None, receive_mode: ReceiveMode = "manual",
                 **options: Any) -> None:
        super().__init__(**options)
        if (path is None) == (host is None or port is None):
            raise ValueError("give host and port, or path")
        self.host = host
        self.port = port
        self.path = path
        self.receive_mode = receive_mode
        self._conn: _Connection | None = None
        self._ready = asyncio.Event()
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._want_events = False
        self._subscribe_lock = asyncio.Lock()
        self._pings = itertools.count(1)

    # ----- public

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        self._ensure_started()
        conn = await self._wait_connection(method)
        return await self._request(conn, method, params)

    async def _call_batch(self, calls: Sequence[Call]) -> list[Outcome]:
        self._ensure_started()
        try:
            conn = await self._wait_connection("batch")
        except SignalError as exc:
            return failed_each(exc, calls)
        ids = [next(self._ids) for _ in calls]
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in calls]
        conn.pending.update(zip(ids, futures, strict=True))
        conn.batched.update(ids)
        try:
            try:
                await conn.write([_rpc_body(call.method, call.params, request_id)
                                  for call, request_id in zip(calls, ids, strict=True)])
            except (OSError, RuntimeError) as exc:
                error = SignalNetworkError("connection to the daemon lost", method="batch")
                error.__cause__ = exc
                return failed_each(error, calls)
            # The daemon answers a batch with one array line, once every call is done;
            # the read loop resolves each call by its id.
            await asyncio.wait(futures, timeout=self.timeout)
        finally:
            for request_id in ids:
                conn.pending.pop(request_id, None)
                conn.batched.discard(request_id)
        outcomes: list[Outcome] = []
        for future, request_id, call in zip(futures, ids, calls, strict=True):
            if not future.done():
                future.cancel()
                outcomes.append(SignalTimeoutError("no reply in time", method=call.method))
            elif (failure := future.exception()) is not None:
                outcomes.append(failure if isinstance(failure, SignalError) else
                                SignalNetworkError("connection to the daemon lost",
                                                   method=call.method))
            else:
                outcomes.append(outcome(future.result(), request_id, call.method))
        return outcomes

    async def events(self) -> AsyncIterator[Envelope]:
        self._claim_events()
        self._want_events = True
        self._ensure_started()
        try:
            conn = self._conn
            if conn is not None and self._ready.is_set():
                try:
                    # A connection made for calls before anyone read events.
                    await self._subscribe(conn)
                except SignalError:
                    conn.writer.close()  # the reconnect subscribes in its handshake
            while True:
                envelope = await self._queue.get()
                if envelope is None:
                    return
                yield envelope
        finally:
            self._events_active = False

    async def aclose(self) -> None:
        self._closed = True
        self._batcher.close()
        self._tracker.closed()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._queue.put_nowait(None)

    # ----- connection management

    def _ensure_started(self) -> None:
        if self._closed:
            raise SignalNetworkError("transport is closed")
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name="signal-socket")

    async def _wait_connection(self, method: str) -> _Connection:
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._ready.wait()
            except TimeoutError:
                raise SignalNetworkError("not connected to the daemon", method=method) from None
        conn = self._conn
        if conn is None:
            raise SignalNetworkError("not connected to the daemon", method=method)
        return conn

    async def _open(self) -> _Connection:
        async with asyncio.timeout(self.connect_timeout):
            if self.path is not None:
                reader, writer = await asyncio.open_unix_connection(
                    self.path, limit=self.max_line_bytes)
            else:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=self.max_line_bytes)
        return _Connection(reader, writer)

    async def _supervise(self) -> None:
        while not self._closed:
            self._tracker.connecting()
            try:
                conn = await self._open()
            except (OSError, TimeoutError) as exc:
                self._tracker.failed(exc)
                log.warning("signal_connect_failed", extra={
                    "transport": "socket", "error": self._tracker.last_error})
                await self._backoff_sleep()
                continue
            self._tracker.connected()
            error: BaseException | str = END_OF_STREAM
            stale = False
            reader = asyncio.create_task(self._read_loop(conn), name="signal-socket-reader")
            try:
                await self._handshake(conn)
                self._tracker.healthy()
                self._conn = conn
                self._ready.set()
                log.info("signal_connected", extra={
                    "transport": "socket", "subscribed": conn.subscription is not None})
                stale = await reader
            except Exception as exc:  # noqa: BLE001 - the connection loop must never die (SIG-3)
                error = exc
            finally:
                self._ready.clear()
                self._conn = None
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                conn.fail_pending(SignalNetworkError("connection to the daemon lost"))
                await conn.close()
            if self._closed:
                return
            if stale:
                error = STALE_STREAM
            self._tracker.lost(error, stale=stale)
            log.warning("signal_disconnected", extra={
                "transport": "socket", "error": self._tracker.last_error, "stale": stale})
            await self._backoff_sleep()

    async def _handshake(self, conn: _Connection) -> None:
        """Prove the connection works; subscribe when events are wanted in manual mode.

        The last check of `_want_events` has no await between it and the caller marking
        the connection ready, so events() either sees it ready or is seen here.
        """
        if not (self._want_events and self.receive_mode == "manual"):
            await self._request(conn, "version", {})
        if self._want_events and self.receive_mode == "manual":
            await self._subscribe(conn)

    async def _subscribe(self, conn: _Connection) -> None:
        async with self._subscribe_lock:
            if conn.subscription is not None or self.receive_mode != "manual":
                return
            params = {"account": self.account} if self.account is not None else {}
            result = await self._request(conn, "subscribeReceive", params)
            if not isinstance(result, int) or isinstance(result, bool):
                raise SignalProtocolError("subscribeReceive returned no id",
                                          method="subscribeReceive")
            conn.subscription = result
            self._tracker.subscription = result

    async def _request(self, conn: _Connection, method: str, params: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        body = _rpc_body(method, params, request_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = future
        try:
            try:
                await conn.write(body)
            except (OSError, RuntimeError) as exc:
                raise SignalNetworkError("connection to the daemon lost", method=method) from exc
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await future
            except TimeoutError:
                raise SignalTimeoutError("no reply in time", method=method) from None
        finally:
            conn.pending.pop(request_id, None)
        return result_of(reply, request_id, method)

    async def _read_loop(self, conn: _Connection) -> bool:
        """Read lines until the connection ends; True when the watchdog ended it."""
        idle = self.stale_after / 2
        ping_outstanding = False
        while True:
            try:
                async with asyncio.timeout(idle):
                    line = await conn.reader.readline()
            except TimeoutError:
                if ping_outstanding:
                    return True
                ping_outstanding = True
                # A string id never collides with our integer request ids.
                await conn.write({"jsonrpc": "2.0", "method": "version",
                                  "id": f"ping-{next(self._pings)}"})
                continue
            except ValueError:
                # Longer than max_line_bytes: asyncio dropped what it had buffered.
                log.warning("signal_event_skipped", extra={"reason": "line_too_long"})
                continue
            if not line:
                return False
            ping_outstanding = False
            self._tracker.activity()
            self._handle_line(conn, line)

    def _handle_line(self, conn: _Connection, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = decode_json(line)
        except ValueError as exc:
            log.warning("signal_event_skipped", extra={
                "reason": "malformed_json", "error": type(exc).__name__, "length": len(line)})
            return
        for item in message if isinstance(message, list) else [message]:
            self._handle_message(conn, item)

    def _handle_message(self, conn: _Connection, message: object) -> None:
        if not isinstance(message, Mapping):
            log.warning("signal_event_skipped", extra={
                "reason": "not_an_object", "error": type(message).__name__})
            return
        if "method" in message:
            if message.get("method") != RECEIVE_EVENT:
                log.warning("signal_event_skipped", extra={"reason": "unexpected_notification"})
                return
            params = message.get("params")
            # manual mode: {"subscription": N, "result": payload}; on-start: the payload.
            if isinstance(params, Mapping) and "subscription" in params:
                params = params.get("result")
            envelope = parse_receive_payload(params)
            if envelope is not None:
                self._queue.put_nowait(envelope)
            return
        if message.get("id") is None and message.get("error") is not None and conn.batched:
            # A batch the daemon could not run at all is answered with one error whose id
            # is null: which batch is unknown, so every batch under way fails with it
            # (receipts and typing indicators only: sends are never batched).
            for batched_id in conn.batched:
                future = conn.pending.get(batched_id)
                if future is not None and not future.done():
                    future.set_result(message)
            return
        request_id = plain_id(message.get("id"))
        future = conn.pending.get(request_id) if request_id is not None else None
        if future is not None:
            if not future.done():
                future.set_result(message)
        elif not (isinstance(request_id, str) and request_id.startswith("ping-")):
            log.warning("signal_reply_unmatched", extra={
                "has_error": message.get("error") is not None})


# --------------------------------------------------------------------------- factory


def create_transport(url: str, **options: Any) -> HttpTransport | SocketTransport:
    """`http(s)://host:port` → HttpTransport; `tcp://host:port`, `unix:///path` →
    SocketTransport. `options` go to the transport (account, timeout, stale_after,
    backoff, sleep, clock, receive_mode for sockets, client for HTTP)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError("signal-cli URL needs a host")
        return HttpTransport(url, **options)
    if scheme == "tcp":
        if not parts.hostname or parts.port is None:
            raise ValueError("tcp:// URL needs host and port")
        return SocketTransport(host=parts.hostname, port=parts.port, **options)
    if scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError("unix:// URL needs a socket path")
        return SocketTransport(path=path, **options)
    raise ValueError("signal-cli URL must start with http://, https://, tcp:// or unix://")


__all__ = [
    "DEFAULT_STALE_AFTER",
    "KEEPALIVE_INTERVAL",
    "ConnectionState",
    "HttpTransport",
    "ReceiptType",
    "ReceiveMode",
    "SignalTransport",
    "SocketTransport",
    "create_transport",
    "mention",
    "text_style",
]
