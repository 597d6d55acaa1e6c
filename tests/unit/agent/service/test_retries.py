"""retries.Retries on an injected clock: a held message waits for its dependency only for
what is left of `hold` since it arrived, and a crashed one is claimed again after the
backoff."""

from __future__ import annotations

import asyncio

import pytest

from agent.service import Backoff, Db, Retries, ServiceStats
from agent.store import InboxMessage, Store
from tests.unit.agent.service.conftest import Clock, admitted


class Monitor:
    """`wait_up` answers `back` and records the timeout it was given."""

    def __init__(self, back: bool) -> None:
        self.back = back
        self.timeouts: list[float] = []

    async def wait_up(self, names: list[str], timeout: float) -> bool:
        self.timeouts.append(timeout)
        return self.back


def retries(store: Store, clock: Clock, stats: ServiceStats, monitor: Monitor | None = None,
            slept: list[float] | None = None) -> Retries:
    async def sleep(seconds: float) -> None:
        if slept is not None:
            slept.append(seconds)

    return Retries(store=store, db=Db(), stats=stats, clock=clock, sleep=sleep,
                   backoff=Backoff(initial=2.0, cap=300.0), hold=300.0,
                   dependencies=monitor)  # type: ignore[arg-type]


async def settle(part: Retries) -> None:
    """Until every scheduled run is done. Awaiting a finished task does not yield, so
    each round also gives the loop a turn to run the callbacks that drop finished tasks
    from the set (without it, a task done but not yet dropped spins this loop forever)."""
    while part._waiting:
        await asyncio.wait(set(part._waiting))
        await asyncio.sleep(0)


@pytest.mark.parametrize(("back", "unavailable"), [(True, False), (False, True)])
async def test_a_held_message_waits_for_what_is_left_of_the_hold(
        store: Store, clock: Clock, stats: ServiceStats, back: bool, unavailable: bool) -> None:
    monitor = Monitor(back)
    part = retries(store, clock, stats, monitor)
    message = admitted(store, "q")
    clock.advance(100.0)
    reruns: list[tuple[InboxMessage, bool]] = []
    part.until_up(message, ["embeddings"], lambda m, u: reruns.append((m, u)))
    await settle(part)
    assert monitor.timeouts == [pytest.approx(200.0)]
    assert reruns == [(message, unavailable)] and stats.held == 1


async def test_a_message_past_its_hold_gets_unavailable_without_waiting(
        store: Store, clock: Clock, stats: ServiceStats) -> None:
    monitor = Monitor(back=True)
    part = retries(store, clock, stats, monitor)
    message = admitted(store, "q")
    clock.advance(301.0)
    reruns: list[bool] = []
    part.until_up(message, ["embeddings"], lambda m, u: reruns.append(u))
    await settle(part)
    assert monitor.timeouts == [] and reruns == [True]


async def test_a_crash_is_claimed_again_after_the_backoff_unless_closed_meanwhile(
        store: Store, clock: Clock, stats: ServiceStats) -> None:
    slept: list[float] = []
    part = retries(store, clock, stats, slept=slept)
    open_one, closed = admitted(store, "q", timestamp=1), admitted(store, "q", timestamp=2)
    store.mark_ignored(closed.key)
    reruns: list[InboxMessage] = []
    part.after_crash(open_one, lambda m, u: reruns.append(m))
    part.after_crash(closed, lambda m, u: reruns.append(m))
    await settle(part)
    assert slept == [4.0, 4.0], "2 s × 2^attempts (the first claim)"
    assert [m.key for m in reruns] == [open_one.key] and reruns[0].attempts == 2


async def test_cancel_leaves_waiting_work_to_the_inbox(store: Store, clock: Clock,
                                                       stats: ServiceStats) -> None:
    never = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await never.wait()

    part = Retries(store=store, db=Db(), stats=stats, clock=clock, sleep=sleep,
                   backoff=Backoff())
    message = admitted(store, "q")
    part.after_crash(message, lambda m, u: None)
    await asyncio.sleep(0)
    part.cancel()
    await asyncio.gather(*part._waiting, return_exceptions=True)
    assert store.counts().inbox["processing"] == 1, "still claimed: re-claimed on start"
