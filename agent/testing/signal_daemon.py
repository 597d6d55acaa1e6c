"""A signal-cli daemon simulator on loopback: the real wire formats, scripted traffic, faults.

Why it exists: Signal's servers are unreachable here, so the real daemon (see
tests/integration/signal_cli_daemon.py) can never deliver a message or report a send
failure. This simulator speaks what signal-cli 0.13.19 speaks, byte for byte where it
matters (docs/signal-cli.md, shared/signal-cli/PROTOCOL.md):

- HTTP: `POST /api/v1/rpc` (415 without a JSON content type, every JSON-RPC reply 200,
  notifications 201), `GET /api/v1/events` (chunked `text/event-stream`; each event is
  `event:receive`, `data:{"account":...,"envelope":{...}}`, a blank line; keep-alive `:`
  lines every `keepalive_interval`; `?account=` unknown in multi-account mode → 400),
  `GET /api/v1/check` (200, empty).
- Batches (a JSON array of requests) on both: the calls run concurrently and their
  replies come back in one array, in the order they finished; `requests` counts
  requests, `count(method)` the calls inside them.
- TCP (and optionally a Unix socket): newline-delimited JSON-RPC both ways; requests are
  handled concurrently (a per-method `reply_delay` reorders replies as the real daemon
  does); incoming messages are `receive` notifications, wrapped as `{"subscription": N,
  "result": payload}` after `subscribeReceive` in manual mode, bare payloads on every
  connection otherwise.

It queues incoming messages (held, as on Signal's servers, until a subscriber is there),
records every call, and injects faults: drop streams (abruptly or cleanly), go silent,
send raw garbage, restart (close everything, refuse connections for a while, listen on
the same ports again), and fail sends (NETWORK_FAILURE, RATE_LIMIT_FAILURE with
retryAfterSeconds and −5, a CAPTCHA token, or any JSON-RPC error).

It runs an asyncio loop in a daemon thread and only uses the standard library (no web
framework is installed here, and a hand-written HTTP/1.1 loop is what lets it reproduce
the daemon's quirks: headers only with the first keep-alive, truncated chunked bodies).
Control methods are synchronous and thread-safe; `close()` returns within a second.

Usage::

    with FakeSignalDaemon() as sim:
        sim.deliver(direct_message("hello"))
        sim.fail_next("send", rate_limit_failure(retry_after=30))
        transport = create_transport(sim.http_url)
        ...
        assert sim.sent("send")[0]["message"] == "hi"
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs

__all__ = [
    "ALICE_NUMBER",
    "ALICE_UUID",
    "BOB_NUMBER",
    "BOB_UUID",
    "BOT_NUMBER",
    "BOT_UUID",
    "GROUP_ID",
    "IDENTITY_FAILURE",
    "NETWORK_FAILURE",
    "UNREGISTERED_FAILURE",
    "Failure",
    "FakeSignalDaemon",
    "RecordedCall",
    "RpcError",
    "call_message",
    "captcha_failure",
    "delete_message",
    "direct_message",
    "edit_message",
    "envelope",
    "fake_signal_daemon",
    "group_message",
    "rate_limit_failure",
    "reaction_message",
    "receipt_message",
    "story_message",
    "sync_sent_message",
    "typing_message",
]

VERSION = "0.13.19"
LOOPBACK = "127.0.0.1"

BOT_NUMBER = "+15550001000"
BOT_UUID = "00000000-0000-4000-8000-00000000b0b0"
ALICE_NUMBER = "+15550001001"
ALICE_UUID = "a11ce000-0000-4000-8000-000000000001"
BOB_NUMBER = "+15550001002"
BOB_UUID = "b0b00000-0000-4000-8000-000000000002"
GROUP_ID = "Z3JvdXAtaWQtZm9yLXRlc3RzLTAwMDAwMDAwMDA9"
OBJECT_REPLACEMENT = "\ufffc"

SEND_METHODS = ("send", "sendTyping", "sendReceipt", "sendReaction")
_NO_ACCOUNT_METHODS = frozenset({"version", "listAccounts", "subscribeReceive",
                                 "unsubscribeReceive"})

_timestamps = itertools.count(1_700_000_000_000)


def next_timestamp() -> int:
    """Increasing millisecond timestamps, as Signal uses for message ids."""
    return next(_timestamps)


# --------------------------------------------------------------------------- envelopes


def envelope(
    *, source_uuid: str | None = ALICE_UUID, source_number: str | None = ALICE_NUMBER,
    source_name: str | None = "Alice", source_device: int | None = 1,
    timestamp: int | None = None, **part: Any,
) -> dict[str, Any]:
    """A JsonMessageEnvelope as 0.13.19 writes it, with one part such as
    `dataMessage={...}`; a hidden number is `source_number=None`."""
    stamp = next_timestamp() if timestamp is None else timestamp
    legacy = source_number if source_number is not None else source_uuid
    return {
        "source": legacy, "sourceNumber": source_number, "sourceUuid": source_uuid,
        "sourceName": source_name, "sourceDevice": source_device, "timestamp": stamp,
        "serverReceivedTimestamp": stamp + 40, "serverDeliveredTimestamp": stamp + 90,
        **part,
    }


def _data_message(
    text: str | None, timestamp: int, *, expires_in_seconds: int = 0,
    group_id: str | None = None, **extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {"timestamp": timestamp, "message": text,
                               "expiresInSeconds": expires_in_seconds, "viewOnce": False}
    message.update({key: value for key, value in extra.items() if value is not None})
    if group_id is not None:
        message["groupInfo"] = {"groupId": group_id, "groupName": "Test group",
                                "revision": 3, "type": "DELIVER"}
    return message


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _mentions(text: str, mentioned: Sequence[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """One mention per U+FFFC in `text`, in order; positions in UTF-16 units."""
    positions = [i for i, char in enumerate(text) if char == OBJECT_REPLACEMENT]
    if len(positions) != len(mentioned):
        raise ValueError("need one (uuid, number) per U+FFFC in the text")
    return [
        {"name": number or uuid_, "number": number, "uuid": uuid_,
         "start": _utf16_len(text[:pos]), "length": 1}
        for pos, (uuid_, number) in zip(positions, mentioned, strict=True)
    ]


def _quote(quote_id: int, author_uuid: str, author_number: str | None,
           text: str | None) -> dict[str, Any]:
    return {"id": quote_id, "author": author_number or author_uuid,
            "authorNumber": author_number, "authorUuid": author_uuid, "text": text,
            "attachments": []}


def direct_message(
    text: str | None, *, timestamp: int | None = None, expires_in_seconds: int = 0,
    quote: tuple[int, str, str | None, str | None] | None = None, attachments: int = 0,
    **sender: Any,
) -> dict[str, Any]:
    """A one-to-one message. `quote` = (quoted timestamp, author uuid, number, text)."""
    stamp = next_timestamp() if timestamp is None else timestamp
    files = [{"contentType": "image/jpeg", "filename": None, "id": f"att{i}", "size": 1024,
              "width": 10, "height": 10, "caption": None, "uploadTimestamp": stamp}
             for i in range(attachments)] or None
    data = _data_message(text, stamp, expires_in_seconds=expires_in_seconds,
                         quote=_quote(*quote) if quote else None, attachments=files)
    return envelope(timestamp=stamp, dataMessage=data, **sender)


def group_message(
    text: str, *, group_id: str = GROUP_ID, timestamp: int | None = None,
    mentions: Sequence[tuple[str, str | None]] = (), expires_in_seconds: int = 0,
    quote: tuple[int, str, str | None, str | None] | None = None, **sender: Any,
) -> dict[str, Any]:
    """A group message; put U+FFFC in `text` where each of `mentions` (uuid, number) is."""
    stamp = next_timestamp() if timestamp is None else timestamp
    data = _data_message(text, stamp, expires_in_seconds=expires_in_seconds,
                         group_id=group_id, mentions=_mentions(text, mentions) or None,
                         quote=_quote(*quote) if quote else None)
    return envelope(timestamp=stamp, dataMessage=data, **sender)


def reaction_message(
    emoji: str, *, target_timestamp: int, target_author_uuid: str = BOT_UUID,
    target_author_number: str | None = BOT_NUMBER, is_remove: bool = False,
    group_id: str | None = None, timestamp: int | None = None, **sender: Any,
) -> dict[str, Any]:
    stamp = next_timestamp() if timestamp is None else timestamp
    reaction = {"emoji": emoji, "targetAuthor": target_author_number or target_author_uuid,
                "targetAuthorNumber": target_author_number,
                "targetAuthorUuid": target_author_uuid,
                "targetSentTimestamp": target_timestamp, "isRemove": is_remove}
    data = _data_message(None, stamp, group_id=group_id, reaction=reaction)
    return envelope(timestamp=stamp, dataMessage=data, **sender)


def receipt_message(
    timestamps: Sequence[int], *, receipt_type: Literal["delivery", "read", "viewed"] = "read",
    timestamp: int | None = None, **sender: Any,
) -> dict[str, Any]:
    stamp = next_timestamp() if timestamp is None else timestamp
    receipt = {"when": stamp, "isDelivery": receipt_type == "delivery",
               "isRead": receipt_type == "read", "isViewed": receipt_type == "viewed",
               "timestamps": list(timestamps)}
    return envelope(timestamp=stamp, receiptMessage=receipt, **sender)


def typing_message(
    action: Literal["STARTED", "STOPPED"] = "STARTED", *, group_id: str | None = None,
    timestamp: int | None = None, **sender: Any,
) -> dict[str, Any]:
    stamp = next_timestamp() if timestamp is None else timestamp
    typing: dict[str, Any] = {"action": action, "timestamp": stamp}
    if group_id is not None:
        typing["groupId"] = group_id
    return envelope(timestamp=stamp, typingMessage=typing, **sender)


def edit_message(
    text: str, *, target_timestamp: int, group_id: str | None = None,
    timestamp: int | None = None, **sender: Any,
) -> dict[str, Any]:
    stamp = next_timestamp() if timestamp is None else timestamp
    edit = {"targetSentTimestamp": target_timestamp,
            "dataMessage": _data_message(text, stamp, group_id=group_id)}
    return envelope(timestamp=stamp, editMessage=edit, **sender)


def delete_message(
    target_timestamp: int, *, group_id: str | None = None, timestamp: int | None = None,
    **sender: Any,
) -> dict[str, Any]:
    stamp = next_timestamp() if timestamp is None else timestamp
    data = _data_message(None, stamp, group_id=group_id,
                         remoteDelete={"timestamp": target_timestamp})
    return envelope(timestamp=stamp, dataMessage=data, **sender)


def sync_sent_message(
    text: str, *, destination_number: str = ALICE_NUMBER, destination_uuid: str = ALICE_UUID,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """What another device of the bot's own account reports it sent."""
    stamp = next_timestamp() if timestamp is None else timestamp
    sent = {"destination": destination_number, "destinationNumber": destination_number,
            "destinationUuid": destination_uuid, **_data_message(text, stamp)}
    return envelope(source_uuid=BOT_UUID, source_number=BOT_NUMBER, source_name=None,
                    source_device=2, timestamp=stamp, syncMessage={"sentMessage": sent})


def story_message(*, group_id: str | None = None, timestamp: int | None = None,
                  **sender: Any) -> dict[str, Any]:
    story: dict[str, Any] = {"allowsReplies": True,
                             "textAttachment": {"text": "story text", "style": "DEFAULT"}}
    if group_id is not None:
        story["groupId"] = group_id
    return envelope(timestamp=timestamp, storyMessage=story, **sender)


def call_message(*, timestamp: int | None = None, **sender: Any) -> dict[str, Any]:
    call = {"offerMessage": {"id": 42, "type": "AUDIO_CALL", "opaque": "AAEC"}}
    return envelope(timestamp=timestamp, callMessage=call, **sender)


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Failure:
    """One recipient's failed outcome in a send result."""

    type: str = "NETWORK_FAILURE"
    token: str | None = None
    retry_after: int | None = None


NETWORK_FAILURE = Failure("NETWORK_FAILURE")
UNREGISTERED_FAILURE = Failure("UNREGISTERED_FAILURE")
IDENTITY_FAILURE = Failure("IDENTITY_FAILURE")


def rate_limit_failure(retry_after: int | None = 60) -> Failure:
    """A plain rate limit. signal-cli 0.13.19 never reports a wait for these (pass None);
    0.14.3 and later send `retryAfterSeconds`."""
    return Failure("RATE_LIMIT_FAILURE", retry_after=retry_after)


def captcha_failure(token: str = "captcha-challenge-token", retry_after: int = 86400) -> Failure:
    """A "proof required" failure: signal-cli reports it as RATE_LIMIT_FAILURE + token."""
    return Failure("RATE_LIMIT_FAILURE", token=token, retry_after=retry_after)


@dataclass(frozen=True)
class RpcError:
    """Answer the next call of a method with this JSON-RPC error."""

    code: int
    message: str
    data: Any = None


Outcome = Failure | None
"""Per recipient: a Failure, or None for SUCCESS."""


@dataclass(frozen=True)
class RecordedCall:
    method: str
    params: dict[str, Any]
    transport: Literal["http", "tcp"]
    id: Any


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Event:
    """An incoming message framed for one subscriber; `payload` goes back to the pending
    queue if the subscriber disappears before it was written."""

    frame: bytes
    payload: dict[str, Any]


_Item = bytes | str | _Event
"""Queue items: raw bytes, an end marker (_CLEAN_END/_ABORT), or an event."""


@dataclass(eq=False)
class _Subscriber:
    """An open SSE stream or a subscribed TCP connection."""

    kind: Literal["sse", "tcp"]
    queue: asyncio.Queue[_Item]
    account: str | None = None
    subscription: int | None = None
    """TCP manual mode: the id; None means the on-start implicit subscription."""


_CLEAN_END = "clean-end"
_ABORT = "abort"


@dataclass(eq=False)
class _TcpConn:
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)
    subscribers: list[_Subscriber] = field(default_factory=list)


def _error(code: int, message: str, id_: Any, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data},
            "id": id_}


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _address(recipient: str) -> dict[str, Any]:
    if _looks_like_uuid(recipient):
        return {"uuid": recipient, "number": None, "username": None}
    return {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, recipient)), "number": recipient,
            "username": None}


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --------------------------------------------------------------------------- the daemon


class FakeSignalDaemon:
    """The simulator. Ports are picked once and kept across `restart()`."""

    def __init__(
        self, *, http: bool = True, tcp: bool = True, accounts: Sequence[str] = (BOT_NUMBER,),
        multi_account: bool = False, receive_mode: Literal["manual", "on-start"] = "manual",
        keepalive_interval: float = 15.0, headers_with_first_keepalive: bool = False,
        groups: Mapping[str, Sequence[str]] | None = None, unix_path: str | None = None,
    ) -> None:
        self.http_enabled = http
        self.tcp_enabled = tcp
        self.unix_path = unix_path
        """Also serve the socket protocol on this Unix socket (`daemon --socket`)."""
        self.accounts = list(accounts)
        self.multi_account = multi_account
        self.receive_mode = receive_mode
        self.keepalive_interval = keepalive_interval
        self.headers_with_first_keepalive = headers_with_first_keepalive
        """Like 0.13.19: the SSE status line goes out only with the first write."""
        default_groups = {GROUP_ID: [ALICE_UUID, BOB_UUID]}
        self.groups: dict[str, list[str]] = {
            gid: list(members) for gid, members in (groups or default_groups).items()
        }
        self.expiration_timers: dict[str, int] = {}
        """Disappearing-message timer per conversation (sender UUID or group id), taken
        from incoming messages as signal-cli does; `expiration_for` says what a send gets."""
        self.reply_delay: dict[str, float] = {}
        """Seconds before answering a method (TCP and HTTP); reorders pipelined replies."""
        self.http_port: int | None = None
        self.tcp_port: int | None = None

        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self._scripts: dict[str, deque[Sequence[Outcome] | RpcError]] = {}
        self._pending: deque[dict[str, Any]] = deque()
        self._silent = False
        self.streams_opened = 0
        self.keepalives_sent = 0
        """SSE keep-alive comments written, so a test can count quiet time in events."""
        self.tcp_connections = 0
        self.subscriptions = 0
        self.requests = 0
        """JSON-RPC requests received (HTTP bodies and socket lines), a batch counting
        once: `count(method)` counts the calls inside them."""

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-signal-daemon",
                                        daemon=True)
        self._servers: list[asyncio.Server] = []
        self._subscribers: list[_Subscriber] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._unsilenced: asyncio.Event | None = None
        self._next_subscription = itertools.count(0)
        self._started = False
        self._closed = False

    # ----- lifecycle

    def start(self) -> Self:
        self._thread.start()
        self._started = True
        self._run(self._setup())
        self._run(self._listen())
        return self

    def close(self) -> None:
        if self._closed or not self._started:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError, RuntimeError):
            self._run(self._shutdown(abort=True), timeout=5.0)
            self._run(self._cancel_all(), timeout=5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def http_url(self) -> str:
        assert self.http_port is not None, "started without http"
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def tcp_url(self) -> str:
        assert self.tcp_port is not None, "started without tcp"
        return f"tcp://{LOOPBACK}:{self.tcp_port}"

    @property
    def unix_url(self) -> str:
        assert self.unix_path is not None, "started without unix_path"
        return f"unix://{self.unix_path}"

    # ----- scripting incoming messages

    def deliver(self, env: Mapping[str, Any], *, account: str | None = None) -> None:
        """Queue an incoming envelope; it goes to the current subscribers (or waits)."""
        payload = {"account": account or self.accounts[0], "envelope": dict(env)}
        data = env.get("dataMessage")
        if isinstance(data, Mapping) and (data.get("message") is not None
                                          or data.get("isExpirationUpdate")):
            # signal-cli's IncomingMessageHandler: a message with a body or a timer update
            # sets the conversation's timer, which SendHelper applies to every send.
            group = data.get("groupInfo")
            chat = group.get("groupId") if isinstance(group, Mapping) else env.get("sourceUuid")
            if isinstance(chat, str):
                with self._lock:
                    self.expiration_timers[chat] = int(data.get("expiresInSeconds") or 0)
        self.deliver_payload(payload)

    def expiration_for(self, params: Mapping[str, Any]) -> int:
        """The disappearing-message timer the daemon gives a recorded `send`."""
        chat = params.get("groupId") or (params.get("recipient") or [None])[0]
        with self._lock:
            return self.expiration_timers.get(str(chat), 0)

    def deliver_payload(self, payload: Mapping[str, Any]) -> None:
        """Queue a raw receive payload, e.g. one with an `exception` object."""
        with self._lock:
            self._pending.append(dict(payload))
        self._loop.call_soon_threadsafe(self._pump)

    @property
    def pending(self) -> int:
        """Messages not yet delivered to any subscriber."""
        with self._lock:
            return len(self._pending)

    @property
    def subscriber_count(self) -> int:
        return int(self._run(self._count_subscribers()))

    # ----- recording

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def sent(self, method: str = "send") -> list[dict[str, Any]]:
        """Params of every call of `method` so far (send, sendTyping, ...)."""
        return [call.params for call in self.calls if call.method == method]

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call.method == method)

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait (on the caller's loop) until `method` was called `count` times."""
        deadline = time.monotonic() + timeout
        while self.count(method) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} called {self.count(method)} times, not {count}")
            await asyncio.sleep(0.01)

    # ----- faults

    def fail_next(self, method: str, *outcomes: Outcome | RpcError) -> None:
        """Script the next call of `method`: an RpcError, or per-recipient outcomes
        (a Failure or None = SUCCESS; recipients beyond the list succeed). With no success,
        the error follows signal-cli: −4 if all untrusted, −5 if all rate limited, else −1,
        with the results in `error.data.response`."""
        script: Sequence[Outcome] | RpcError
        if len(outcomes) == 1 and isinstance(outcomes[0], RpcError):
            script = outcomes[0]
        else:
            if any(isinstance(item, RpcError) for item in outcomes):
                raise ValueError("an RpcError replaces the whole reply: pass it alone")
            script = [item for item in outcomes if not isinstance(item, RpcError)]
        with self._lock:
            self._scripts.setdefault(method, deque()).append(script)

    def go_silent(self, silent: bool = True) -> None:
        """A hung daemon: connections stay open, nothing is sent (no keep-alives, events or
        replies) until `go_silent(False)`."""
        self._silent = silent
        self._loop.call_soon_threadsafe(self._set_silence, silent)

    def drop_streams(self, *, clean: bool = False) -> None:
        """End every SSE stream and TCP connection: abruptly (like kill -9: the chunked body
        is cut off) or `clean`ly (like SIGTERM: the body ends properly)."""
        self._run(self._drop(clean=clean))

    def inject_raw(self, data: bytes, *, sse: bool = True, tcp: bool = True) -> None:
        """Write raw bytes into every SSE stream and/or TCP connection (garbage lines)."""
        self._run(self._inject(data, sse=sse, tcp=tcp))

    def restart(self, down_for: float = 0.3) -> None:
        """Close every connection and the listeners, refuse connections for `down_for`
        seconds, then listen on the same ports again. Returns at once."""
        self._run(self._shutdown(abort=True))
        self._loop.call_soon_threadsafe(
            lambda: self._loop.call_later(down_for, self._spawn, self._listen()))

    def stop_listening(self) -> None:
        """Like the daemon dying: everything closed, connections refused until `resume()`."""
        self._run(self._shutdown(abort=True))

    def resume(self) -> None:
        self._run(self._listen())

    @property
    def listening(self) -> bool:
        return bool(self._servers)

    # ----- loop plumbing

    def _run(self, coro: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _setup(self) -> None:
        self._unsilenced = asyncio.Event()
        self._unsilenced.set()

    async def _cancel_all(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _count_subscribers(self) -> int:
        return len(self._subscribers)

    def _set_silence(self, silent: bool) -> None:
        assert self._unsilenced is not None
        if silent:
            self._unsilenced.clear()
        else:
            self._unsilenced.set()
            self._pump()

    async def _listen(self) -> None:
        if self._closed or self._servers:
            return
        if self.http_enabled:
            server = await asyncio.start_server(self._http_conn, LOOPBACK, self.http_port or 0)
            self.http_port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        if self.tcp_enabled:
            server = await asyncio.start_server(self._tcp_conn, LOOPBACK, self.tcp_port or 0)
            self.tcp_port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        if self.unix_path is not None:
            self._servers.append(await asyncio.start_unix_server(self._tcp_conn, self.unix_path))

    async def _shutdown(self, *, abort: bool) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        await self._drop(clean=not abort)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _drop(self, *, clean: bool) -> None:
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.queue.put_nowait(_CLEAN_END if clean else _ABORT)
        for writer in list(self._writers):
            if getattr(writer, "_fake_kind", None) == "tcp":
                if clean:
                    writer.close()
                else:
                    writer.transport.abort()
        await asyncio.sleep(0)

    async def _inject(self, data: bytes, *, sse: bool, tcp: bool) -> None:
        seen: set[int] = set()
        for subscriber in self._subscribers:
            wanted = (subscriber.kind == "sse" and sse) or (subscriber.kind == "tcp" and tcp)
            if wanted and id(subscriber.queue) not in seen:
                seen.add(id(subscriber.queue))
                subscriber.queue.put_nowait(data)
        if tcp:
            for writer in list(self._writers):
                conn = getattr(writer, "_fake_conn", None)
                if isinstance(conn, _TcpConn) and id(conn.queue) not in seen:
                    seen.add(id(conn.queue))
                    conn.queue.put_nowait(data)

    def _pump(self) -> None:
        """Hand queued messages to the current subscribers (all of them get each one)."""
        assert self._unsilenced is not None
        if not self._unsilenced.is_set() or not self._subscribers:
            return
        with self._lock:
            payloads = list(self._pending)
            self._pending.clear()
        kept: list[dict[str, Any]] = []
        for payload in payloads:
            targets = [s for s in self._subscribers
                       if s.account is None or s.account == payload.get("account")]
            if not targets:
                kept.append(payload)
                continue
            for subscriber in targets:
                subscriber.queue.put_nowait(_Event(self._frame(subscriber, payload), payload))
        if kept:
            with self._lock:
                self._pending.extendleft(reversed(kept))

    def _requeue(self, queue: asyncio.Queue[_Item]) -> None:
        """Put events a vanished subscriber never got back in front of the pending queue."""
        lost: list[dict[str, Any]] = []
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, _Event):
                lost.append(item.payload)
        if lost:
            with self._lock:
                self._pending.extendleft(reversed(lost))
            self._loop.call_soon(self._pump)

    @staticmethod
    def _frame(subscriber: _Subscriber, payload: dict[str, Any]) -> bytes:
        if subscriber.kind == "sse":
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            return f"event:receive\ndata:{data}\n\n".encode()
        params: dict[str, Any] = payload
        if subscriber.subscription is not None:
            params = {"subscription": subscriber.subscription, "result": payload}
        message = {"jsonrpc": "2.0", "method": "receive", "params": params}
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    # ----- JSON-RPC

    def _take_script(self, method: str) -> Sequence[Outcome] | RpcError | None:
        with self._lock:
            queue = self._scripts.get(method)
            return queue.popleft() if queue else None

    async def _dispatch(self, request: object, transport: Literal["http", "tcp"],
                        conn: _TcpConn | None) -> dict[str, Any] | None:
        """One request → its reply (None for a notification)."""
        if not isinstance(request, dict):
            return _error(-32600, f"unexpected type: {type(request).__name__.upper()}", None)
        id_ = request.get("id")
        is_notification = "id" not in request
        if request.get("jsonrpc") != "2.0":
            return _error(-32600, "only jsonrpc version 2.0 is supported", id_)
        method = request.get("method")
        if not isinstance(method, str):
            return _error(-32600, "method field must be set", id_)
        params = request.get("params") or {}
        if not isinstance(params, dict):
            return _error(-32600, "Cannot deserialize value of type params", id_)
        with self._lock:
            self._calls.append(RecordedCall(method, dict(params), transport, id_))
        delay = self.reply_delay.get(method, 0.0)
        if delay:
            await asyncio.sleep(delay)
        reply = self._answer(method, params, id_, transport, conn)
        return None if is_notification else reply

    def _check_account(
        self, method: str, params: dict[str, Any], id_: Any
    ) -> dict[str, Any] | None:
        if not self.multi_account:
            return None
        account = params.get("account")
        if account is None:
            if method in _NO_ACCOUNT_METHODS:
                return None
            return _error(-32602, "Method requires valid account parameter", id_)
        if account not in self.accounts:
            return _error(-32602, "Specified account does not exist", id_)
        return None

    def _answer(  # noqa: PLR0911 - one return per method, like a dispatch table
        self, method: str, params: dict[str, Any], id_: Any,
        transport: Literal["http", "tcp"], conn: _TcpConn | None,
    ) -> dict[str, Any]:
        denied = self._check_account(method, params, id_)
        if denied is not None:
            return denied
        script = self._take_script(method)
        if isinstance(script, RpcError):
            return _error(script.code, script.message, id_, script.data)
        if method == "version":
            return {"jsonrpc": "2.0", "result": {"version": VERSION}, "id": id_}
        if method == "listAccounts":
            return {"jsonrpc": "2.0", "result": [{"number": a} for a in self.accounts], "id": id_}
        if method == "listGroups":
            return {"jsonrpc": "2.0", "result": [], "id": id_}
        if method in ("subscribeReceive", "unsubscribeReceive"):
            if transport == "http" or conn is None:
                return _error(-32601, "Method not implemented", id_)
            return self._subscription(method, params, id_, conn)
        if method in SEND_METHODS:
            return self._send(method, params, id_, script or [])
        return _error(-32601, "Method not implemented", id_)

    def _subscription(self, method: str, params: dict[str, Any], id_: Any,
                      conn: _TcpConn) -> dict[str, Any]:
        if method == "subscribeReceive":
            subscription = next(self._next_subscription)
            subscriber = _Subscriber("tcp", conn.queue, params.get("account"), subscription)
            conn.subscribers.append(subscriber)
            self._subscribers.append(subscriber)
            self.subscriptions += 1
            self._loop.call_soon(self._pump)
            return {"jsonrpc": "2.0", "result": subscription, "id": id_}
        wanted = params.get("subscription")
        for subscriber in conn.subscribers:
            if subscriber.subscription == wanted:
                conn.subscribers.remove(subscriber)
                with contextlib.suppress(ValueError):
                    self._subscribers.remove(subscriber)
                return {"jsonrpc": "2.0", "result": {}, "id": id_}
        return _error(-1, "Unknown subscription id", id_)

    def _recipients(self, params: dict[str, Any]) -> list[tuple[str, str | None]] | None:
        """(recipient, group id) pairs; None when the group is unknown."""
        recipients = params.get("recipient") or []
        if isinstance(recipients, str):
            recipients = [recipients]
        group_ids = params.get("groupId") or []
        if isinstance(group_ids, str):
            group_ids = [group_ids]
        pairs: list[tuple[str, str | None]] = [(r, None) for r in recipients]
        for group_id in group_ids:
            if group_id not in self.groups:
                return None
            pairs.extend((member, group_id) for member in self.groups[group_id])
        return pairs

    def _send(self, method: str, params: dict[str, Any], id_: Any,
              outcomes: Sequence[Outcome]) -> dict[str, Any]:
        pairs = self._recipients(params)
        if pairs is None:
            return _error(-1, "Invalid group id", id_)
        if not pairs:
            return _error(-1, "No recipients given", id_)
        stamp = next_timestamp()
        results = []
        for index, (recipient, group_id) in enumerate(pairs):
            outcome = outcomes[index] if index < len(outcomes) else None
            item: dict[str, Any] = {"recipientAddress": _address(recipient)}
            if group_id is not None:
                item["groupId"] = group_id
            item["type"] = "SUCCESS" if outcome is None else outcome.type
            if outcome is not None and outcome.token is not None:
                item["token"] = outcome.token
            if outcome is not None and outcome.retry_after is not None:
                item["retryAfterSeconds"] = outcome.retry_after
            results.append(item)
        response = {"timestamp": stamp, "results": results}
        types = [item["type"] for item in results]
        if "SUCCESS" in types:
            return {"jsonrpc": "2.0", "result": response, "id": id_}
        data = {"response": response}
        if all(t == "IDENTITY_FAILURE" for t in types):
            return _error(-4, "Failed to send message due to untrusted identities", id_, data)
        if all(t == "RATE_LIMIT_FAILURE" for t in types):
            return _error(-5, "Failed to send message due to rate limiting", id_, data)
        return _error(-1, "Failed to send message", id_, data)

    # ----- HTTP

    async def _http_conn(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line.strip():
                    return
                verb, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                keep_open = await self._http_route(reader, writer, (verb, target, headers, body))
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _http_head(status: int, reason: str, headers: Sequence[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}", "Date: Mon, 01 Jan 2024 00:00:00 GMT",
                 *(f"{k}: {v}" for k, v in headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _http_reply(self, writer: asyncio.StreamWriter, status: int, reason: str, *,
                          body: bytes = b"", content_type: str | None = None,
                          close: bool = False) -> None:
        headers = [("Content-length", str(len(body)))]
        if content_type:
            headers.insert(0, ("Content-type", content_type))
        if close:
            headers.append(("Connection", "close"))
        writer.write(self._http_head(status, reason, headers) + body)
        await writer.drain()

    async def _http_route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          request: tuple[str, str, dict[str, str], bytes]) -> bool:
        verb, target, headers, body = request
        path, _, query = target.partition("?")
        routes = {"/api/v1/rpc": "POST", "/api/v1/events": "GET", "/api/v1/check": "GET"}
        if path not in routes:
            page = b"<h1>404 Not Found</h1>No context found for request"
            await self._http_reply(writer, 404, "Not Found", body=page,
                                   content_type="text/html", close=True)
            return False
        if verb != routes[path]:
            await self._http_reply(writer, 405, "Method Not Allowed")
            return True
        if path == "/api/v1/check":
            await self._http_reply(writer, 200, "OK")
            return True
        if path == "/api/v1/events":
            await self._sse(reader, writer, parse_qs(query))
            return False
        if not headers.get("content-type", "").startswith("application/json"):
            await self._http_reply(writer, 415, "Unsupported Media Type")
            return True
        assert self._unsilenced is not None
        await self._unsilenced.wait()
        reply = await self._rpc_body(body, "http", None)
        if reply is None:
            await self._http_reply(writer, 201, "Created")
        else:
            await self._http_reply(writer, 200, "OK", body=reply, content_type="application/json")
        return True

    async def _rpc_body(self, body: bytes, transport: Literal["http", "tcp"],
                        conn: _TcpConn | None) -> bytes | None:
        """A request line or body → the reply bytes (None when nothing is owed)."""
        if not body.strip():
            if transport == "tcp":
                return json.dumps(_error(-32700, "Empty input line", None)).encode()
            return json.dumps(_error(-32600, "unexpected type: MISSING", None)).encode()
        try:
            request = json.loads(body)
        except ValueError:
            return json.dumps(_error(-32700, "Unexpected character", None)).encode()
        with self._lock:
            self.requests += 1
        if isinstance(request, list):
            if not request:
                return json.dumps(_error(-32600, "invalid request", None)).encode()
            # Like the daemon: the calls run concurrently, the replies come back in the
            # order they finished (docs/signal-cli.md), in one array once all are done.
            calls = [asyncio.ensure_future(self._dispatch(r, transport, conn)) for r in request]
            replies = [await call for call in asyncio.as_completed(calls)]
            answered = [reply for reply in replies if reply is not None]
            return json.dumps(answered).encode() if answered else None
        reply = await self._dispatch(request, transport, conn)
        return None if reply is None else json.dumps(reply).encode()

    async def _sse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   query: dict[str, list[str]]) -> None:
        account = (query.get("account") or [""])[0]
        if account and self.multi_account and account not in self.accounts:
            await self._http_reply(writer, 400, "Bad Request", close=True)
            return
        head = self._http_head(200, "OK", [("Content-type", "text/event-stream"),
                                           ("Transfer-encoding", "chunked")])
        if not self.headers_with_first_keepalive:
            writer.write(head)
            await writer.drain()
            head = b""
        subscriber = _Subscriber("sse", asyncio.Queue(), account or None)
        self._subscribers.append(subscriber)
        self.streams_opened += 1
        self._pump()
        assert self._unsilenced is not None
        # The client never sends on an event stream: any read result means it left.
        gone = self._loop.create_task(reader.read(1))
        try:
            while True:
                getter = self._loop.create_task(subscriber.queue.get())
                done, _ = await asyncio.wait({getter, gone}, timeout=self.keepalive_interval,
                                             return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    getter.cancel()
                    return
                item: _Item
                if getter in done:
                    item = getter.result()
                else:
                    getter.cancel()
                    if not self._unsilenced.is_set():
                        continue
                    item = b":\n"
                    self.keepalives_sent += 1
                if item == _ABORT:
                    writer.transport.abort()
                    return
                if item == _CLEAN_END:
                    writer.write(head + b"0\r\n\r\n")
                    await writer.drain()
                    return
                data = item.frame if isinstance(item, _Event) else item
                assert isinstance(data, bytes)
                writer.write(head + _chunk(data))
                head = b""
                await writer.drain()
        except ConnectionError:
            return
        finally:
            gone.cancel()
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)
            self._requeue(subscriber.queue)

    # ----- TCP

    async def _tcp_conn(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        conn = _TcpConn(writer)
        writer._fake_kind = "tcp"  # type: ignore[attr-defined]
        writer._fake_conn = conn  # type: ignore[attr-defined]
        self._writers.add(writer)
        self.tcp_connections += 1
        if self.receive_mode != "manual":
            implicit = _Subscriber("tcp", conn.queue, None, None)
            next(self._next_subscription)  # the implicit one takes an id, as in the daemon
            conn.subscribers.append(implicit)
            self._subscribers.append(implicit)
            self._pump()
        pump = self._spawn(self._tcp_writer(conn))
        handlers: set[asyncio.Task[Any]] = set()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                task = self._loop.create_task(self._tcp_request(line, conn))
                handlers.add(task)
                task.add_done_callback(handlers.discard)
        except (ConnectionError, ValueError):
            return
        finally:
            for subscriber in conn.subscribers:
                with contextlib.suppress(ValueError):
                    self._subscribers.remove(subscriber)
            for task in handlers:
                task.cancel()
            pump.cancel()
            self._requeue(conn.queue)
            self._writers.discard(writer)
            writer.close()

    async def _tcp_request(self, line: bytes, conn: _TcpConn) -> None:
        assert self._unsilenced is not None
        await self._unsilenced.wait()  # hung: requests wait until it recovers
        reply = await self._rpc_body(line.rstrip(b"\r\n"), "tcp", conn)
        if reply is not None:
            # The daemon writes the JSON and its newline separately (two TCP segments).
            conn.queue.put_nowait(reply)
            conn.queue.put_nowait(b"\n")

    async def _tcp_writer(self, conn: _TcpConn) -> None:
        assert self._unsilenced is not None
        try:
            while True:
                item = await conn.queue.get()
                if item == _ABORT:
                    conn.writer.transport.abort()
                    return
                if item == _CLEAN_END:
                    conn.writer.close()
                    return
                await self._unsilenced.wait()
                data = item.frame if isinstance(item, _Event) else item
                assert isinstance(data, bytes)
                conn.writer.write(data)
                await conn.writer.drain()
        except ConnectionError:
            return


@contextlib.contextmanager
def fake_signal_daemon(**options: Any) -> Iterator[FakeSignalDaemon]:
    """`with fake_signal_daemon(keepalive_interval=0.1) as sim:` - started and closed."""
    sim = FakeSignalDaemon(**options)
    sim.start()
    try:
        yield sim
    finally:
        sim.close()
