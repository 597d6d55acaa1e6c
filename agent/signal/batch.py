"""JSON-RPC 2.0 batches: calls made while others are under way share one request (PERF-2).

Why: every request costs the bot (and the daemon) far more than the call it carries; at
100 users the bot spent most of its time in HTTP requests for read receipts, typing
indicators and replies. signal-cli answers a batch (a JSON array of requests, over HTTP
and over a socket) by running its calls concurrently and replying with one array, in any
order (docs/signal-cli.md), so replies are matched by id.

`CallBatcher` batches the group-commit way and adds no wait: a call goes out at once
when fewer than `max_in_flight` requests are under way; otherwise it waits, and every call
that queued meanwhile leaves in the next request when one comes back. Calls made in the
same turn of the event loop also share a request. A caller that gives up (a typing
indicator cancelled because the answer came first) is dropped before its request goes
out. Written here because the JSON-RPC clients on PyPI have no concurrent batching.

What a batch costs: its reply comes when its slowest call is done, and a request that
fails as a whole (the daemon unreachable, no reply in time) fails every call in it, each
with its own copy of the error. A failed send is retried, so a send in a batch that timed
out because of another call would be delivered twice although it went through: sends and
reactions (what users see) are never batched (`SOLO`). Each goes at once in a request of
its own, outside the limits above, as without batching (the outbox bounds how many are
under way); read receipts and typing indicators, which nobody retries, share requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.signal.errors import SignalError, SignalNetworkError, SignalProtocolError, error_from_rpc

log = logging.getLogger(__name__)

MAX_BATCH = 32
"""Calls in one request at most."""
MAX_IN_FLIGHT = 4
"""Requests under way at once; calls made meanwhile wait for the next one."""
SOLO = frozenset({"send", "sendReaction"})
"""Methods never batched: what users see must not be sent twice (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class Call:
    """One JSON-RPC call: its method and its parameters (the account already added)."""

    method: str
    params: dict[str, Any]


Outcome = Any
"""What one call of a batch came to: its `result` (a JSON value), or the `SignalError` to
raise to its caller."""
RunBatch = Callable[[Sequence[Call]], Awaitable[list[Outcome]]]
"""Sends calls (one plain request for a single call, a batch for more) and returns one
outcome per call, in order; fails a call by returning its error, never by raising."""


def plain_id(value: object) -> int | str | None:
    """A reply id usable as a dict key (bool is not an id even though True == 1)."""
    if isinstance(value, bool):
        return None
    return value if isinstance(value, int | str) else None


def result_of(reply: object, request_id: object, method: str) -> Any:
    """The `result` of one JSON-RPC reply, or the mapped exception of its `error`."""
    if not isinstance(reply, Mapping):
        raise SignalProtocolError("reply is not a JSON object", method=method)
    error = reply.get("error")
    if error is not None:
        raise error_from_rpc(error, method=method)
    if reply.get("id") != request_id:
        raise SignalProtocolError("reply carries another id", method=method)
    if "result" not in reply:
        raise SignalProtocolError("reply without result", method=method)
    return reply["result"]


def outcome(reply: object, request_id: int, method: str) -> Outcome:
    """`result_of`, with the error returned instead of raised."""
    try:
        return result_of(reply, request_id, method)
    except SignalError as exc:
        return exc


def batch_outcomes(reply: object, ids: Sequence[int], calls: Sequence[Call]) -> list[Outcome]:
    """The outcome of each call from the daemon's reply to a batch.

    The reply should be an array holding one reply per call, in any order. A call whose
    id is missing from it fails with SignalProtocolError; a single error object instead
    of an array (what the daemon sends when the whole request failed) fails every call
    with that error; anything else fails every call as a protocol error.
    """
    if isinstance(reply, list):
        by_id = {plain_id(item.get("id")): item for item in reply if isinstance(item, Mapping)}
        return [outcome(by_id[request_id], request_id, call.method) if request_id in by_id
                else SignalProtocolError("batch reply lacks this call", method=call.method)
                for request_id, call in zip(ids, calls, strict=True)]
    if isinstance(reply, Mapping) and reply.get("error") is not None:
        return [error_from_rpc(reply["error"], method=call.method) for call in calls]
    return [SignalProtocolError("batch reply is not an array", method=call.method)
            for call in calls]


def failed_each(error: SignalError, calls: Sequence[Call]) -> list[Outcome]:
    """A request that failed as a whole: the same kind of error for each call, its own."""
    outcomes: list[Outcome] = []
    for call in calls:
        copy = type(error)(error.reason, method=call.method, code=error.code)
        copy.__cause__ = error.__cause__
        outcomes.append(copy)
    return outcomes


@dataclass(slots=True)
class _Queued:
    call: Call
    future: asyncio.Future[Any]


@dataclass(eq=False)
class CallBatcher:
    """Queues calls and sends them with `run`, batched (see the module docstring)."""

    run: RunBatch
    max_batch: int = MAX_BATCH
    max_in_flight: int = MAX_IN_FLIGHT
    solo: frozenset[str] = SOLO
    """Methods whose calls go at once, each in a request of its own, outside the limits."""
    requests: int = 0
    """Requests sent (for tests and benchmarks)."""
    _queue: list[_Queued] = field(default_factory=list, init=False)
    _in_flight: dict[asyncio.Task[None], list[_Queued]] = field(default_factory=dict,
                                                               init=False)
    _flush_soon: asyncio.Handle | None = field(default=None, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")

    async def call(self, call: Call) -> Any:
        """The call's result; raises its SignalError."""
        if self._closed:
            raise SignalNetworkError("transport is closed", method=call.method)
        if call.method in self.solo:
            self.requests += 1
            [result] = await self._outcomes([call])
            if isinstance(result, BaseException):
                raise result
            return result
        loop = asyncio.get_running_loop()
        queued = _Queued(call, loop.create_future())
        self._queue.append(queued)
        if self._flush_soon is None:  # calls made in this turn of the loop go together
            self._flush_soon = loop.call_soon(self._flush)
        return await queued.future

    def close(self) -> None:
        """Fail what is queued and stop what is under way (the transport is closing)."""
        self._closed = True
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        for task, batch in self._in_flight.items():
            _fail_closed(batch)
            task.cancel()
        _fail_closed(self._queue)
        self._queue.clear()

    def _flush(self) -> None:
        self._flush_soon = None
        while self._queue and len(self._in_flight) < self.max_in_flight:
            taken = self._queue[:self.max_batch]
            del self._queue[:self.max_batch]
            batch = [queued for queued in taken if not queued.future.done()]
            if not batch:  # every caller gave up: nothing to send
                continue
            self.requests += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight[task] = batch
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if self._queue and not self._closed:
            self._flush()

    async def _send(self, batch: list[_Queued]) -> None:
        try:
            outcomes = await self._outcomes([queued.call for queued in batch])
        except asyncio.CancelledError:
            _fail_closed(batch)
            raise
        for queued, result in zip(batch, outcomes, strict=True):
            if queued.future.done():  # its caller gave up meanwhile
                continue
            if isinstance(result, BaseException):
                queued.future.set_exception(result)
            else:
                queued.future.set_result(result)


    async def _outcomes(self, calls: list[Call]) -> list[Outcome]:
        """`run`, never raising but when cancelled: one outcome per call."""
        try:
            outcomes = await self.run(calls)
            if len(outcomes) != len(calls):
                raise SignalProtocolError("batch outcomes do not match its calls")
        except SignalError as exc:
            return failed_each(exc, calls)
        except Exception as exc:  # noqa: BLE001 - a bug, not the daemon: callers must not wait for ever
            log.error("signal_batch_failed", extra={"error": type(exc).__name__,
                                                     "calls": len(calls)})
            return failed_each(_unexpected(exc), calls)
        return outcomes


def _unexpected(exc: Exception, method: str | None = None) -> SignalProtocolError:
    """An exception `run` should never raise, as the SignalError its callers expect."""
    error = SignalProtocolError("request failed unexpectedly", method=method)
    error.__cause__ = exc
    return error


def _fail_closed(batch: list[_Queued]) -> None:
    for queued in batch:
        if not queued.future.done():
            queued.future.set_exception(
                SignalNetworkError("transport is closed", method=queued.call.method))
