"""admission.Gate: the typed decision for each kind of message, in the order the gate
checks them; the clock is injected (the mute check and `Admit.at` read it)."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from agent.commands import help_text
from agent.observability.alerts import LIMITS_STORAGE_UNREACHABLE
from agent.observability.dependencies import (
    EMBEDDINGS,
    LIMITS_STORAGE,
    Dependency,
    DependencyMonitor,
)
from agent.ratelimit import ActivationLockout, Decision, UserRateLimiter
from agent.service import (
    ACTIVATED,
    NOT_ADMIN,
    SLOW_DOWN,
    AccessPolicy,
    Admit,
    Alerting,
    CommandRunner,
    Db,
    DependencyDown,
    Gate,
    Respond,
    ServiceStats,
    Silence,
)
from agent.store import Store
from agent.users import UserDirectory
from tests.unit.agent.service.conftest import ADMIN, ALICE, Clock, FakeAssistant, admitted

PASSPHRASE = "open sesame 42"


class Muting:
    """An anomaly detector that mutes one user and records when it was asked."""

    def __init__(self, muted: str) -> None:
        self.muted = muted
        self.asked_at: list[float] = []

    def is_muted(self, user: str, at: float) -> bool:
        self.asked_at.append(at)
        return user == self.muted

    def forget(self, user: str) -> None:
        pass


class Down:
    """A dependency monitor that reports the embedding endpoint down."""

    def __init__(self) -> None:
        self.dependencies = {EMBEDDINGS: object()}

    def down(self, names: list[str]) -> list[str]:
        return [name for name in names if name == EMBEDDINGS]

    def report(self, name: str, up: bool, error: str = "") -> None:
        pass


def gate(store: Store, users: UserDirectory, clock: Clock, *, assistant: Any = None,
         access: AccessPolicy | None = None, rates: str = "10/minute",
         anomalies: Any = None, dependencies: Any = None) -> Gate:
    assistant = assistant or FakeAssistant()
    access = access or AccessPolicy(passphrase=PASSPHRASE, admins=frozenset({ADMIN}))
    stats, db, limiter = ServiceStats(), Db(), UserRateLimiter(rates)
    commands = CommandRunner(access=access, assistant=assistant, transport=Any,
                             store=store, users=users, db=db, limiter=limiter,
                             anomalies=anomalies, stats=stats)
    return Gate(access=access, hash_user=assistant.hash_user,
                index_loaded=lambda: assistant.index is not None, users=users, db=db,
                lockout=ActivationLockout(failures="2/hour"), limiter=limiter,
                commands=commands, alerting=Alerting(stats, alert=lambda kind: None),
                anomalies=anomalies, dependencies=dependencies, clock=clock)


async def test_a_stranger_off_the_allow_list_gets_silence(store: Store, users: UserDirectory,
                                                          clock: Clock) -> None:
    allow = AccessPolicy(allowed=frozenset({ADMIN}))
    decision = await gate(store, users, clock, access=allow).decide(admitted(store, "hi"))
    assert decision == Silence("not_allowed")


async def test_activation_wrong_then_right_then_locked_out(store: Store, users: UserDirectory,
                                                           clock: Clock) -> None:
    check = gate(store, users, clock)
    assert await check.decide(admitted(store, "hello?", timestamp=1)) == \
        Silence("not_activated")
    assert await check.decide(admitted(store, PASSPHRASE, timestamp=2)) == Respond(ACTIVATED)
    assert users.is_activated(FakeAssistant.hash_user(ALICE))
    bob = "b0b0b0b0-0000-4000-8000-000000000003"
    for timestamp in (3, 4):
        assert await check.decide(admitted(store, "guess", sender=bob, timestamp=timestamp)) \
            == Silence("not_activated")
    # Two failures an hour: the third attempt is locked out, even with the passphrase.
    assert await check.decide(admitted(store, PASSPHRASE, sender=bob, timestamp=5)) == \
        Silence("locked_out")


async def test_commands_answer_and_admin_ones_refuse_others(store: Store,
                                                             users: UserDirectory,
                                                             clock: Clock) -> None:
    users.activate(FakeAssistant.hash_user(ALICE))
    check = gate(store, users, clock)
    assert await check.decide(admitted(store, "/help", timestamp=1)) == Respond(help_text("/"))
    assert await check.decide(admitted(store, "/status", timestamp=2)) == Respond(NOT_ADMIN)


async def test_a_question_is_admitted_at_the_injected_time(store: Store, users: UserDirectory,
                                                           clock: Clock) -> None:
    users.activate(FakeAssistant.hash_user(ALICE))
    decision = await gate(store, users, clock).decide(admitted(store, "How often?"))
    assert decision == Admit(user=FakeAssistant.hash_user(ALICE), text="How often?",
                             at=clock.now)


async def test_a_muted_user_gets_silence_checked_at_the_injected_time(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    user = FakeAssistant.hash_user(ALICE)
    users.activate(user)
    muting = Muting(user)
    clock.advance(42.0)
    decision = await gate(store, users, clock, anomalies=muting).decide(admitted(store, "q"))
    assert decision == Silence("muted") and muting.asked_at == [clock.now]


async def test_the_eleventh_message_gets_one_notice_then_silence(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    users.activate(FakeAssistant.hash_user(ALICE))
    check = gate(store, users, clock, rates="2/minute")
    decisions = [await check.decide(admitted(store, "q", timestamp=t)) for t in range(4)]
    assert [type(d) for d in decisions[:2]] == [Admit, Admit]
    notice = decisions[2]
    assert isinstance(notice, Respond)
    assert notice.text.startswith(SLOW_DOWN.split("{", 1)[0])
    assert decisions[3] == Silence("rate_limited")


async def test_a_question_waits_while_the_embedding_endpoint_is_down(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    users.activate(FakeAssistant.hash_user(ALICE))
    with pytest.raises(DependencyDown) as down:
        await gate(store, users, clock, dependencies=Down()).decide(admitted(store, "q"))
    assert down.value.names == [EMBEDDINGS]
    # Without an index the answer is the index fallback anyway: no wait.
    no_index = FakeAssistant()
    no_index.index = None
    decision = await gate(store, users, clock, assistant=no_index,
                          dependencies=Down()).decide(admitted(store, "q", timestamp=2))
    assert isinstance(decision, Admit)


@pytest.mark.parametrize("text", [
    "", "\x00\x1b[31m" + PASSPHRASE, PASSPHRASE + "\u202e", "/" * 10_000, "\ufeff/help",
])
async def test_hostile_text_before_activation_never_activates(
        store: Store, users: UserDirectory, clock: Clock, text: str) -> None:
    decision = await gate(store, users, clock).decide(admitted(store, text))
    assert decision in (Silence("not_activated"), Silence("locked_out"))
    assert not users.is_activated(FakeAssistant.hash_user(ALICE))


async def test_a_message_without_payload_is_not_activated_and_not_a_crash(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    emptied = dataclasses.replace(admitted(store, PASSPHRASE), payload=None)
    assert await gate(store, users, clock).decide(emptied) == Silence("not_activated")


class StaleConnections:
    """A rate limiter whose shared store has just come back: each stale pooled connection
    fails its first command (a degraded decision), the next ones work."""

    def __init__(self, stale: int) -> None:
        self.stale = stale

    def hit(self, user: str) -> Decision:
        if self.stale:
            self.stale -= 1
            return Decision(allowed=True, degraded=True)
        return Decision(allowed=True)


async def test_limits_storage_alert_is_the_monitors_not_one_per_stale_connection(
        store: Store, users: UserDirectory, clock: Clock) -> None:
    """With Redis probed, the monitor owns `limits_storage_unreachable` (after its grace,
    once per outage); degraded decisions after Redis returned raise nothing themselves."""
    alerts = RecordingAlerts()

    async def probe() -> None:
        return None

    monitor = DependencyMonitor(
        [Dependency(LIMITS_STORAGE, probe, LIMITS_STORAGE_UNREACHABLE)], alerts,
        alert_after=60, clock=clock)
    stats = ServiceStats()
    users.activate(FakeAssistant.hash_user(ALICE))
    assistant = FakeAssistant()
    access = AccessPolicy(passphrase=PASSPHRASE)
    limiter = StaleConnections(stale=3)
    the_gate = Gate(access=access, hash_user=assistant.hash_user,
                    index_loaded=lambda: True, users=users, db=Db(),
                    lockout=ActivationLockout(), limiter=cast(Any, limiter),
                    commands=CommandRunner(access=access, assistant=assistant, transport=Any,
                                           store=store, users=users, db=Db(),
                                           limiter=cast(Any, limiter), anomalies=None,
                                           stats=stats),
                    alerting=Alerting(stats, alert=alerts.raised), dependencies=monitor,
                    clock=clock)
    for timestamp in range(1, 6):
        decision = await the_gate.decide(admitted(store, "q", timestamp=timestamp))
        assert isinstance(decision, Admit)
    assert stats.alerts == []
    assert {kind for kind, _ in alerts.calls} == {"resolve"}, alerts.calls
    assert monitor.state(LIMITS_STORAGE).up is True


class RecordingAlerts:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def raised(self, kind: str) -> None:
        self.calls.append(("raise", kind))

    def alert(self, condition: str, **fields: str) -> None:
        self.calls.append(("alert", condition))

    def resolve(self, condition: str) -> None:
        self.calls.append(("resolve", condition))
