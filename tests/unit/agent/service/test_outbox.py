"""outbox.OutboxSender: order, citations remembered with the sent timestamp, and the fate
of each kind of failure, on an injected clock (a retry is due exactly when the clock
says so)."""

from __future__ import annotations

import asyncio

from agent.service import Alerting, Backoff, Db, OutboxSender, ServiceStats
from agent.signal import SignalError, SignalRateLimited, SignalUnregistered
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
