"""core.BotService, the coordinator, with fake parts around the real store: what `handle`
keeps and drops, how each decision becomes a reply or a silence, and what a crash or a
poison message gets. Sleep and clock are injected."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from agent.addressing import BotIdentity
from agent.assistant import Answer
from agent.ratelimit import ActivationLockout, UserRateLimiter
from agent.service import ACTIVATED, GAVE_UP, MAX_ATTEMPTS, AccessPolicy, BotService
from agent.signal import Envelope, EnvelopeKind
from agent.signal.envelope import Reaction
from agent.store import InboxKey, Store
from agent.users import UserDirectory
from agent.wiring import assemble_service
from tests.unit.agent.service.conftest import ALICE, Clock, FakeAssistant, FakeTransport, admitted

BOT = BotIdentity(uuid="b07b07b0-0000-4000-8000-00000000000b", number="+15550001000")


def service(assistant: FakeAssistant, store: Store, users: UserDirectory, clock: Clock,
            slept: list[float] | None = None) -> BotService:
    async def sleep(seconds: float) -> None:
        if slept is not None:
            slept.append(seconds)

    return assemble_service(
        transport=FakeTransport(),  # type: ignore[arg-type]
        assistant=assistant,  # type: ignore[arg-type]
        store=store, users=users, limiter=UserRateLimiter(), lockout=ActivationLockout(),
        bot=BOT, access=AccessPolicy(passphrase="open sesame 42"), clock=clock, sleep=sleep,
        retry_initial=2.0, retry_cap=300.0, typing_delay=0)


def envelope(text: str, **fields: Any) -> Envelope:
    return Envelope(kind=EnvelopeKind.DATA, timestamp=fields.pop("timestamp", 1),
                    source_uuid=fields.pop("source_uuid", ALICE), text=text, **fields)


async def drain(bot: BotService) -> None:
    while bot._in_flight:
        await asyncio.wait(set(bot._in_flight))
        await asyncio.sleep(0)  # finished tasks leave the set in their done callback


async def test_handle_admits_once_and_ignores_itself(store: Store, users: UserDirectory,
                                                     clock: Clock) -> None:
    bot = service(FakeAssistant(), store, users, clock)
    await bot.handle(envelope("hello"))
    await bot.handle(envelope("hello"))  # redelivered
    await bot.handle(envelope("hello", source_uuid=BOT.uuid, timestamp=2))
    await drain(bot)
    assert bot.stats.received == 2 and bot.stats.duplicates == 1
    assert store.counts().inbox["ignored"] == 1, "not activated: a silence, recorded"


async def test_a_reaction_to_an_answer_is_feedback_and_nothing_else(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    bot = service(FakeAssistant(), store, users, clock)
    # A graph answer (it has a route): reactions to command replies are not feedback (EV-4).
    users.remember_answer(FakeAssistant.hash_user(ALICE), "dm", 777, [], route="answered")
    for author in (BOT.uuid, ALICE):  # only reactions to the bot's own messages count
        await bot.handle(Envelope(
            kind=EnvelopeKind.REACTION, timestamp=2, source_uuid=ALICE,
            reaction=Reaction("\N{THUMBS UP SIGN}", author, None, 777, False)))
    assert users.feedback() == [(777, "\N{THUMBS UP SIGN}")]
    assert bot.stats.received == 0 and store.counts().inbox["pending"] == 0


async def test_decisions_become_replies_with_their_routes(store: Store, users: UserDirectory,
                                                          clock: Clock) -> None:
    assistant = FakeAssistant([Answer("Every 300 km [1].", [{"number": 1, "title": "Bikes",
                                                            "source": "bikes.txt",
                                                            "page": None}])])
    bot = service(assistant, store, users, clock)
    silence = await bot._reply(admitted(store, "hi", timestamp=1))
    activated = await bot._reply(admitted(store, "open sesame 42", timestamp=2))
    answer = await bot._reply(admitted(store, "How often?", timestamp=3))
    assert (silence.text, silence.route) == (None, "silence")
    assert (activated.text, activated.route) == (ACTIVATED, "service")
    assert answer.route == "answered" and answer.citations[0]["source"] == "bikes.txt"


async def test_a_crash_is_retried_with_backoff_until_the_apology(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    """Every attempt crashes: the message stays open, is retried after 2 s × 2^attempts
    (injected sleep), and once past MAX_ATTEMPTS gets the apology instead (RES-2)."""
    slept: list[float] = []
    assistant = FakeAssistant([RuntimeError("graph crashed")] * 5)
    users.activate(FakeAssistant.hash_user(ALICE))
    bot = service(assistant, store, users, clock, slept)
    await bot._process(admitted(store, "q"))
    assert store.counts().inbox["processing"] == 1, "kept open for the retry"
    while bot.retries._waiting or bot._in_flight:
        await asyncio.wait(bot.retries._waiting | bot._in_flight)
        await asyncio.sleep(0)  # finished tasks leave the sets in their done callbacks
    assert slept == [2.0 * 2 ** attempts for attempts in range(1, MAX_ATTEMPTS + 1)]
    assert len(assistant.asked) == MAX_ATTEMPTS
    assert [item.text for item in store.due_outbox(clock())] == [GAVE_UP]


async def test_a_write_the_full_disk_refuses_waits_for_it_without_spending_an_attempt(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    """The graph's write fails with SQLITE_FULL: not a crash of the message. It waits,
    claimed, for the data directory, and is answered once when it takes writes again."""
    import sqlite3

    from agent.observability.dependencies import DATA_DIR, Dependency, DependencyMonitor

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL

    async def probe() -> None:
        return None

    monitor = DependencyMonitor([Dependency(DATA_DIR, probe, "data_dir_unwritable")],
                                clock=clock)
    assistant = FakeAssistant([full, Answer("Every 300 km [1].", [])])
    users.activate(FakeAssistant.hash_user(ALICE))
    bot = assemble_service(
        transport=FakeTransport(),  # type: ignore[arg-type]
        assistant=assistant,  # type: ignore[arg-type]
        store=store, users=users, limiter=UserRateLimiter(), lockout=ActivationLockout(),
        bot=BOT, access=AccessPolicy(passphrase="open sesame 42"), clock=clock,
        typing_delay=0, dependencies=monitor)  # type: ignore[arg-type]
    await bot._process(admitted(store, "q"))
    assert monitor.down([DATA_DIR]) == [DATA_DIR] and bot.stats.held == 1
    assert store.counts().inbox["processing"] == 1 and store.due_outbox(clock()) == []
    await asyncio.sleep(0)
    monitor.report(DATA_DIR, True)  # the probe: space is back
    while bot.retries._waiting or bot._in_flight:
        await asyncio.wait(bot.retries._waiting | bot._in_flight)
        await asyncio.sleep(0)
    assert [item.text for item in store.due_outbox(clock())] == ["Every 300 km [1]."]
    message = store.get(InboxKey(ALICE, 1))
    assert len(assistant.asked) == 2 and message is not None and message.attempts == 1


async def test_a_reply_the_full_disk_refuses_is_written_later_without_running_the_graph_again(
        tmp_path: Path, users: UserDirectory, clock: Clock) -> None:
    """The reply's own write fails with SQLITE_FULL while the probe still finds the data
    directory writable (a small probe file fits, the reply does not): each retry tries
    the write again, never the graph (the model would be called once per probe cycle for
    as long as the disk stays full)."""
    import sqlite3

    from agent.observability.dependencies import DATA_DIR, Dependency, DependencyMonitor

    class NearlyFull(Store):
        refusals = 2

        def record_reply(self, *args: Any, **kwargs: Any) -> bool:
            if self.refusals:
                self.refusals -= 1
                full = sqlite3.OperationalError("database or disk is full")
                full.sqlite_errorcode = sqlite3.SQLITE_FULL
                raise full
            return super().record_reply(*args, **kwargs)

    async def probe() -> None:
        return None

    monitor = DependencyMonitor([Dependency(DATA_DIR, probe, "data_dir_unwritable")],
                                clock=clock)
    nearly_full = NearlyFull(tmp_path / "nearly-full.sqlite3", clock=clock)
    assistant = FakeAssistant([Answer("Every 300 km [1].", []), Answer("again", [])])
    users.activate(FakeAssistant.hash_user(ALICE))
    try:
        await write_later(nearly_full, assistant, users, monitor, clock)
    finally:
        nearly_full.close()


async def write_later(nearly_full: Any, assistant: FakeAssistant, users: UserDirectory,
                      monitor: Any, clock: Clock) -> None:
    from agent.observability.dependencies import DATA_DIR

    bot = assemble_service(
        transport=FakeTransport(),  # type: ignore[arg-type]
        assistant=assistant,  # type: ignore[arg-type]
        store=nearly_full, users=users, limiter=UserRateLimiter(),
        lockout=ActivationLockout(), bot=BOT, access=AccessPolicy(passphrase="open sesame 42"),
        clock=clock, typing_delay=0, dependencies=monitor)
    await bot._process(admitted(nearly_full, "q"))
    for _ in range(2):  # the probe finds the directory writable; the write fails again
        for _ in range(3000):  # a bound against a hang (30 s), not a speed limit
            if monitor.down([DATA_DIR]):
                break
            await asyncio.sleep(0.01)
        assert monitor.down([DATA_DIR]) == [DATA_DIR]
        await asyncio.sleep(0)
        monitor.report(DATA_DIR, True)
    while bot.retries._waiting or bot._in_flight:
        await asyncio.wait(bot.retries._waiting | bot._in_flight)
        await asyncio.sleep(0)
    assert nearly_full.refusals == 0 and bot.stats.held == 2
    assert [item.text for item in nearly_full.due_outbox(clock())] == ["Every 300 km [1]."]
    assert len(assistant.asked) == 1


async def test_the_receive_loop_writes_senders_side_by_side_and_each_in_order(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    bob = "b0b0b0b0-0000-4000-8000-000000000002"
    bot = service(FakeAssistant(), store, users, clock)
    arrived = [envelope("a1", timestamp=1), envelope("b1", source_uuid=bob, timestamp=2),
               envelope("a2", timestamp=3), envelope("b2", source_uuid=bob, timestamp=4),
               envelope("a3", timestamp=5)]

    async def events() -> Any:
        for item in arrived:
            yield item

    started: list[str] = []
    release = {item.text: asyncio.Event() for item in arrived}

    async def handle(item: Envelope) -> None:
        started.append(str(item.text))
        await release[str(item.text)].wait()
        if item.text == "a2":
            raise RuntimeError("one bad envelope")  # logged; the rest go on

    bot.transport.events = events  # type: ignore[method-assign]
    bot.handle = handle  # type: ignore[method-assign, assignment]
    receiving = asyncio.create_task(bot._receive_loop())
    for _ in range(100):
        await asyncio.sleep(0)
    assert started == ["a1", "b1"], "one envelope per sender at a time, senders side by side"
    release["b1"].set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert started == ["a1", "b1", "b2"], "alice's next waits for her first"
    for text in ("a1", "a2", "b2", "a3"):
        release[text].set()
    await receiving
    while bot._admitting:
        await asyncio.wait(set(bot._admitting))
        await asyncio.sleep(0)
    assert started == ["a1", "b1", "b2", "a2", "a3"]
    assert not bot._sender_queues, "no sender is remembered once its envelopes are done"


async def test_an_envelope_read_while_every_slot_is_taken_is_admitted_at_stop(
        store: Store, users: UserDirectory, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping while the receive loop waits for a slot must not drop the envelope it has
    already read: the daemon will not send it again."""
    monkeypatch.setattr("agent.service.core.MAX_ADMITTING", 1)
    bot = service(FakeAssistant(), store, users, clock)
    arrived = [envelope("first", timestamp=1), envelope("second", timestamp=2)]
    never = asyncio.Event()

    async def events() -> Any:
        for item in arrived:
            yield item
        await never.wait()

    handled: list[str] = []
    release = asyncio.Event()

    async def handle(item: Envelope) -> None:
        await release.wait()
        handled.append(str(item.text))

    bot.transport.events = events  # type: ignore[method-assign]
    bot.handle = handle  # type: ignore[method-assign, assignment]
    receiving = asyncio.create_task(bot._receive_loop())
    for _ in range(100):
        await asyncio.sleep(0)
    assert len(bot._admitting) == 1, "the second envelope waits for the only slot"
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiving
    assert len(bot._admitting) == 2, "the read envelope joined the ones being admitted"
    release.set()
    while bot._admitting:
        await asyncio.wait(set(bot._admitting))
        await asyncio.sleep(0)
    assert handled == ["first", "second"]
