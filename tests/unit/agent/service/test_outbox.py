"""outbox.OutboxSender: order, citations remembered with the sent timestamp, and the fate
of each kind of failure, on an injected clock (a retry is due exactly when the clock
says so)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from agent.service import Alerting, Backoff, Db, OutboxSender, ServiceStats
from agent.signal import SendResult, SignalError, SignalRateLimited, SignalUnregistered
from agent.store import ReplyPart, Store
from agent.users import UserDirectory
from tests.unit.agent.service.conftest import ALICE, Clock, FakeAssistant, FakeTransport, admitted

CITATIONS = [{"number": 1, "title": "Bikes", "source": "bikes.txt"}]


def sender(transport: FakeTransport, store: Store, users: UserDirectory, clock: Clock,
           stats: ServiceStats) -> OutboxSender:
    return OutboxSender(transport=transport, store=store, users=users, db=Db(),
                        hash_user=FakeAssistant.hash_user,
                        alerting=Alerting(stats, alert=lambda kind: None), stats=stats,
                        clock=clock, backoff=Backoff(initial=2.0, cap=300.0))


def reply(store: Store, out: OutboxSender, *texts: str, timestamp: int = 1) -> None:
    message = admitted(store, "q", timestamp=timestamp)
    out.expect(message.key, CITATIONS)
    assert store.record_reply(message.key, [ReplyPart(text=t, recipient=ALICE)
                                            for t in texts])


async def send_due(out: OutboxSender) -> None:
    """One pass of the loop: `drain` first, so `run` returns once nothing is due."""
    out.drain()
    await asyncio.wait_for(out.run(), timeout=30)


async def test_parts_go_out_in_order_and_the_sources_are_remembered(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    transport = FakeTransport()
    out = sender(transport, store, users, clock, stats)
    reply(store, out, "part one", "part two")
    await send_due(out)
    assert [s["message"] for s in transport.sent] == ["part one", "part two"]
    assert stats.sent == 2
    user = FakeAssistant.hash_user(ALICE)
    assert users.last_answer_timestamp(user, "dm") == 5_001, "the first part's timestamp"
    assert users.last_sources(user, "dm") == CITATIONS


async def test_a_transient_failure_is_retried_when_the_backoff_has_passed(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    transport = FakeTransport(failures=[SignalError("connection reset")])
    out = sender(transport, store, users, clock, stats)
    reply(store, out, "answer")
    await send_due(out)
    assert transport.sent == [] and stats.send_retries == 1
    assert store.next_due_at() == clock.now + 2.0, "initial backoff, first attempt"
    clock.advance(1.9)
    assert store.due_outbox(clock()) == [], "not due before the backoff"
    clock.advance(0.1)
    await send_due(sender(transport, store, users, clock, stats))
    assert [s["message"] for s in transport.sent] == ["answer"]


async def test_signal_rate_limit_waits_ten_minutes_and_alerts(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    transport = FakeTransport(failures=[SignalRateLimited("slow down", retry_after=5)])
    out = sender(transport, store, users, clock, stats)
    reply(store, out, "answer")
    await send_due(out)
    assert store.next_due_at() == clock.now + 600, "at least 600 s, whatever it says"
    assert stats.alerts == ["signal_rate_limited"]


async def test_an_unregistered_recipient_fails_for_good_and_the_next_reply_goes(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    transport = FakeTransport(failures=[SignalUnregistered("gone")])
    out = sender(transport, store, users, clock, stats)
    reply(store, out, "first", timestamp=1)
    reply(store, out, "second", timestamp=2)
    await send_due(out)
    assert stats.send_failed == 1 and [s["message"] for s in transport.sent] == ["second"]
    assert store.counts().outbox == {"pending": 0, "sent": 1, "failed_permanent": 1}


async def test_a_waiting_part_holds_back_the_rest_of_its_reply(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    transport = FakeTransport(failures=[SignalError("timeout")])
    out = sender(transport, store, users, clock, stats)
    reply(store, out, "part one", "part two")
    await send_due(out)
    assert transport.sent == [], "part two never arrives before part one"
    clock.advance(2.0)
    await send_due(sender(transport, store, users, clock, stats))
    assert [s["message"] for s in transport.sent] == ["part one", "part two"]


BOB = "b0b0b0b0-0000-4000-8000-000000000003"


class _OneChatFailsOneIsSlow(FakeTransport):
    """Alice's send fails at once; Bob's waits for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.bob_started = asyncio.Event()

    async def send(self, message: str, **kwargs: Any) -> SendResult:
        if kwargs.get("recipients") == [ALICE]:
            raise SignalError("connection reset")
        self.bob_started.set()
        await self.release.wait()
        return await super().send(message, **kwargs)


async def test_a_chat_that_raises_waits_for_the_other_chats_before_the_round_ends(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk-full error in one chat must not end the round while another chat's part is
    still being sent: the next round would find that part due and send it twice."""
    transport = _OneChatFailsOneIsSlow()
    out = sender(transport, store, users, clock, stats)
    for who, timestamp in ((ALICE, 1), (BOB, 2)):
        message = admitted(store, "q", sender=who, timestamp=timestamp)
        assert store.record_reply(message.key, [ReplyPart(text=f"to {who}", recipient=who)])

    def disk_full(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async def inline(call: Any, *args: Any) -> Any:  # no thread: steps count in loop turns
        return call(*args)

    monkeypatch.setattr(store, "mark_retry", disk_full)
    monkeypatch.setattr(out, "db", inline)
    round_ = asyncio.ensure_future(out._send_due(store.due_outbox(clock())))
    await transport.bob_started.wait()
    for _ in range(20):  # Alice's failure has long been raised by now
        await asyncio.sleep(0)
    assert not round_.done(), "the round ended while Bob's part was still being sent"
    transport.release.set()
    with pytest.raises(sqlite3.OperationalError):
        await round_
    assert [s["message"] for s in transport.sent] == [f"to {BOB}"]
    assert store.due_outbox(clock()) != [] and all(
        item.recipient == ALICE for item in store.due_outbox(clock())), "Bob's part is sent"
