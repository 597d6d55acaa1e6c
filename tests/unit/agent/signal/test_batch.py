"""agent/signal/batch.py: JSON-RPC batches of concurrent calls, and hostile batch replies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from agent.signal.batch import Call, CallBatcher, Outcome, batch_outcomes, failed_each
from agent.signal.errors import (
    SignalError,
    SignalNetworkError,
    SignalProtocolError,
    SignalRateLimited,
    SignalTimeoutError,
)

CALLS = [Call("sendReceipt", {"recipient": "a"}), Call("sendTyping", {"recipient": "b"}),
         Call("send", {"recipient": ["c"], "message": "hi"})]
IDS = [7, 8, 9]


def ok(request_id: object, result: object = None) -> dict[str, object]:
    return {"jsonrpc": "2.0", "result": result or {"timestamp": 1, "results": []},
            "id": request_id}


def test_replies_are_matched_by_id_in_any_order() -> None:
    outcomes = batch_outcomes([ok(9, {"n": 9}), ok(7, {"n": 7}), ok(8, {"n": 8})], IDS, CALLS)
    assert outcomes == [{"n": 7}, {"n": 8}, {"n": 9}]


def test_a_call_missing_from_the_reply_fails_alone() -> None:
    outcomes = batch_outcomes([ok(7), ok(9), ok(99), "junk", {"id": True}], IDS, CALLS)
    assert not isinstance(outcomes[0], BaseException)
    assert isinstance(outcomes[1], SignalProtocolError) and outcomes[1].method == "sendTyping"
    assert not isinstance(outcomes[2], BaseException)


def test_errors_of_some_calls_are_theirs_only() -> None:
    rate_limited = {"jsonrpc": "2.0", "id": 9,
                    "error": {"code": -5, "message": "rate limited +4912345"}}
    outcomes = batch_outcomes([ok(7), rate_limited,
                               {"jsonrpc": "2.0", "id": 8, "result": None, "x": 1}], IDS, CALLS)
    assert outcomes[0] == ok(7)["result"]
    assert outcomes[1] is None  # sendTyping's result is whatever the daemon says
    assert isinstance(outcomes[2], SignalRateLimited) and outcomes[2].method == "send"
    assert "+4912345" not in str(outcomes[2]), "the daemon's text stays out of messages"


@pytest.mark.parametrize("reply", [None, 3, "[]", {"id": 7, "result": 1}, {"jsonrpc": "2.0"}])
def test_a_reply_that_is_not_an_array_fails_every_call(reply: object) -> None:
    outcomes = batch_outcomes(reply, IDS, CALLS)
    assert all(isinstance(o, SignalProtocolError) for o in outcomes)
    assert [o.method for o in outcomes] == ["sendReceipt", "sendTyping", "send"]


def test_one_error_object_for_the_whole_batch_fails_every_call_with_it() -> None:
    internal = {"jsonrpc": "2.0", "id": None,
                "error": {"code": -32603, "message": "An internal server error has occurred."}}
    outcomes = batch_outcomes(internal, IDS, CALLS)
    assert all(isinstance(o, SignalError) and o.code == -32603 for o in outcomes)


def test_a_whole_request_failure_gives_each_call_its_own_error() -> None:
    cause = OSError("reset")
    error = SignalTimeoutError("no reply in time", method="batch")
    error.__cause__ = cause
    outcomes = failed_each(error, CALLS)
    assert len({id(o) for o in outcomes}) == 3
    assert all(type(o) is SignalTimeoutError and o.__cause__ is cause for o in outcomes)
    assert [o.method for o in outcomes] == ["sendReceipt", "sendTyping", "send"]


class Daemon:
    """Records what the batcher sends; answers when `release` is set."""

    def __init__(self, fail: SignalError | None = None, short: bool = False) -> None:
        self.sent: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail = fail
        self.short = short

    async def run(self, calls: Sequence[Call]) -> list[Outcome]:
        self.sent.append([call.params["recipient"] for call in calls])
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        outcomes: list[Outcome] = [f"done {call.params['recipient']}" for call in calls]
        return outcomes[:-1] if self.short else outcomes


def call(recipient: str) -> Call:
    return Call("sendReceipt", {"recipient": recipient})


async def test_calls_made_together_share_one_request() -> None:
    daemon = Daemon()
    batcher = CallBatcher(daemon.run)
    results = await asyncio.gather(*(batcher.call(call(r)) for r in "abc"))
    assert results == ["done a", "done b", "done c"]
    assert daemon.sent == [["a", "b", "c"]] and batcher.requests == 1


async def test_calls_wait_while_requests_are_under_way_then_go_together() -> None:
    daemon = Daemon()
    daemon.release.clear()
    batcher = CallBatcher(daemon.run, max_in_flight=1, max_batch=2)
    first = asyncio.ensure_future(batcher.call(call("a")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batcher.call(call(r))) for r in "bcd"]
    await asyncio.sleep(0)
    assert daemon.sent == [["a"]], "one request at a time: the others wait"
    daemon.release.set()
    assert await asyncio.gather(first, *later) == ["done a", "done b", "done c", "done d"]
    assert daemon.sent == [["a"], ["b", "c"], ["d"]], "at most max_batch per request"


async def test_a_caller_that_gave_up_is_never_sent() -> None:
    daemon = Daemon()
    daemon.release.clear()
    batcher = CallBatcher(daemon.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(call("a")))
    await asyncio.sleep(0)
    typing = asyncio.ensure_future(batcher.call(call("typing")))
    receipt = asyncio.ensure_future(batcher.call(call("b")))
    await asyncio.sleep(0)
    typing.cancel()  # the answer came first
    daemon.release.set()
    assert await asyncio.gather(first, receipt) == ["done a", "done b"]
    assert daemon.sent == [["a"], ["b"]]


async def test_a_failed_request_fails_each_of_its_calls() -> None:
    batcher = CallBatcher(Daemon(fail=SignalNetworkError("daemon unreachable")).run)
    results = await asyncio.gather(*(batcher.call(call(r)) for r in "ab"),
                                   return_exceptions=True)
    assert all(isinstance(r, SignalNetworkError) for r in results)
    assert results[0] is not results[1]


async def test_outcomes_that_do_not_match_the_calls_fail_them_all() -> None:
    batcher = CallBatcher(Daemon(short=True).run)
    results = await asyncio.gather(*(batcher.call(call(r)) for r in "ab"),
                                   return_exceptions=True)
    assert all(isinstance(r, SignalProtocolError) for r in results)


async def test_close_fails_queued_and_later_calls() -> None:
    daemon = Daemon()
    daemon.release.clear()
    batcher = CallBatcher(daemon.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(call("a")))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(batcher.call(call("b")))
    await asyncio.sleep(0)
    batcher.close()
    results = await asyncio.gather(first, queued, return_exceptions=True)
    assert all(isinstance(r, SignalNetworkError) for r in results)
    with pytest.raises(SignalNetworkError):
        await batcher.call(call("c"))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CallBatcher(Daemon().run, max_batch=0)


async def test_an_unexpected_exception_fails_every_call_of_the_request() -> None:
    """A bug in `run` (not a SignalError) must not leave callers waiting for ever."""
    bug = KeyError("oops")

    async def broken(calls: Sequence[Call]) -> list[Outcome]:
        raise bug

    batcher = CallBatcher(broken)
    callers = [asyncio.ensure_future(batcher.call(call(r))) for r in "ab"]
    for _ in range(10):
        await asyncio.sleep(0)
    assert all(caller.done() for caller in callers), "callers left waiting"
    results = [caller.exception() for caller in callers]
    assert all(isinstance(r, SignalProtocolError) and r.__cause__ is bug for r in results)
    assert results[0] is not results[1]


def send(recipient: str) -> Call:
    return Call("send", {"recipient": recipient, "message": "hi"})


def reaction(recipient: str) -> Call:
    return Call("sendReaction", {"recipient": recipient, "emoji": "+"})


async def test_sends_and_reactions_each_go_alone_while_courtesies_share_a_request() -> None:
    """A batch is answered when its slowest call is done and times out as a whole: a send
    in one would be retried (and delivered twice) for a timeout caused by another."""
    daemon = Daemon()
    daemon.release.clear()
    batcher = CallBatcher(daemon.run, max_in_flight=1)
    callers = [asyncio.ensure_future(batcher.call(c)) for c in
               (send("a"), call("r1"), send("b"), reaction("c"), call("r2"))]
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(daemon.sent) == [["a"], ["b"], ["c"], ["r1", "r2"]], \
        "sends go at once, alone, whatever else is under way"
    daemon.release.set()
    assert await asyncio.gather(*callers) == ["done a", "done r1", "done b", "done c",
                                              "done r2"]
    assert batcher.requests == 4


async def test_a_lone_send_gets_its_own_error() -> None:
    rate_limited = SignalRateLimited("slow down", method="send")

    async def failing(calls: Sequence[Call]) -> list[Outcome]:
        return [rate_limited]

    with pytest.raises(SignalRateLimited) as raised:
        await CallBatcher(failing).call(send("a"))
    assert raised.value is rate_limited


@pytest.mark.parametrize("failure", [SignalNetworkError("unreachable"), KeyError("bug")])
async def test_a_lone_send_whose_request_fails_raises_a_signal_error(
        failure: Exception) -> None:
    async def failing(calls: Sequence[Call]) -> list[Outcome]:
        raise failure

    with pytest.raises(SignalError) as raised:
        await CallBatcher(failing).call(send("a"))
    assert raised.value.method == "send"
    if not isinstance(failure, SignalError):
        assert isinstance(raised.value, SignalProtocolError)
        assert raised.value.__cause__ is failure
