"""The dependency monitor: states, backoff, alert after the grace time, waiting, reports."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.observability.dependencies import (
    DATA_DIR,
    EMBEDDINGS,
    MODEL,
    Dependency,
    DependencyMonitor,
    data_dir_probe,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Alerts:
    def __init__(self) -> None:
        self.firing: dict[str, dict[str, str]] = {}
        self.resolved: list[str] = []

    def alert(self, condition: str, **fields: str) -> None:
        self.firing[condition] = fields

    def resolve(self, condition: str) -> None:
        self.firing.pop(condition, None)
        self.resolved.append(condition)


class Switch:
    """A probe that fails while `down`."""

    def __init__(self, down: bool = True) -> None:
        self.down = down
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError


def monitor(switch: Switch, alerts: Alerts, clock: Clock, **options: float
            ) -> DependencyMonitor:
    return DependencyMonitor([Dependency(EMBEDDINGS, switch, "embeddings_unreachable")],
                             alerts, clock=clock, alert_after=120.0, **options)


async def test_unknown_until_probed_then_down_with_the_error_class() -> None:
    clock, alerts, switch = Clock(), Alerts(), Switch()
    deps = monitor(switch, alerts, clock)
    assert deps.state(EMBEDDINGS).up is None and deps.down() == []  # nothing waits on it
    assert deps.state(EMBEDDINGS).detail == "not checked yet"
    assert await deps.probe(EMBEDDINGS) is False
    assert deps.down() == [EMBEDDINGS]
    assert deps.state(EMBEDDINGS).detail == "unreachable: ConnectionRefusedError"
    assert deps.up() == {EMBEDDINGS: False}


async def test_backoff_doubles_while_down_up_to_the_cap_and_resets_when_up() -> None:
    clock, alerts, switch = Clock(), Alerts(), Switch()
    deps = monitor(switch, alerts, clock, backoff_initial=1.0, backoff_cap=8.0,
                   interval=30.0)
    delays = []
    for _ in range(6):
        await deps.probe(EMBEDDINGS)
        delays.append(deps.next_delay(EMBEDDINGS))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    switch.down = False
    await deps.probe(EMBEDDINGS)
    assert deps.next_delay(EMBEDDINGS) == 30.0
    switch.down = True
    await deps.probe(EMBEDDINGS)
    assert deps.next_delay(EMBEDDINGS) == 1.0


async def test_the_alert_fires_only_after_the_grace_time_and_resolves_when_back() -> None:
    clock, alerts, switch = Clock(), Alerts(), Switch()
    deps = monitor(switch, alerts, clock)
    await deps.probe(EMBEDDINGS)
    clock.now += 119
    await deps.probe(EMBEDDINGS)
    assert alerts.firing == {}
    clock.now += 1
    await deps.probe(EMBEDDINGS)
    assert alerts.firing["embeddings_unreachable"] == {
        "dependency": EMBEDDINGS, "down_s": "120", "error": "ConnectionRefusedError"}
    switch.down = False
    await deps.probe(EMBEDDINGS)
    assert alerts.firing == {} and alerts.resolved[-1] == "embeddings_unreachable"


async def test_a_probe_that_hangs_counts_as_down() -> None:
    clock, alerts = Clock(), Alerts()

    async def hang() -> None:
        await asyncio.Event().wait()

    deps = DependencyMonitor([Dependency(MODEL, hang, "model_unreachable")], alerts,
                             clock=clock, probe_timeout=0.01)
    assert await deps.probe(MODEL) is False
    assert deps.state(MODEL).detail == "unreachable: Timeout"


async def test_wait_up_returns_when_the_dependency_comes_back_or_at_the_timeout() -> None:
    clock, alerts, switch = Clock(), Alerts(), Switch()
    deps = monitor(switch, alerts, clock)
    await deps.probe(EMBEDDINGS)
    waiter = asyncio.ensure_future(deps.wait_up([EMBEDDINGS], timeout=60))
    await asyncio.sleep(0)
    assert not waiter.done()
    switch.down = False
    await deps.probe(EMBEDDINGS)
    assert await asyncio.wait_for(waiter, 5) is True

    switch.down = True
    await deps.probe(EMBEDDINGS)
    assert await deps.wait_up([EMBEDDINGS], timeout=0) is False  # the hold time is over
    assert await deps.wait_up([MODEL], timeout=0) is True  # not monitored: never waits


async def test_reports_from_worker_threads_mark_it_down_and_wake_the_prober() -> None:
    clock, alerts, switch = Clock(), Alerts(), Switch(down=False)
    deps = monitor(switch, alerts, clock, interval=3600.0)
    stop = asyncio.Event()
    runner = asyncio.ensure_future(deps.run(stop))
    while deps.state(EMBEDDINGS).up is not True:
        await asyncio.sleep(0.001)
    calls = switch.calls
    switch.down = True
    await asyncio.to_thread(deps.report, EMBEDDINGS, False, "EmbeddingError")
    assert deps.down() == [EMBEDDINGS]
    while switch.calls == calls:  # woken at once, not after the hour-long interval
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert deps.state(EMBEDDINGS).detail == "unreachable: ConnectionRefusedError"


@pytest.mark.parametrize("ok", [True, False])
def test_a_report_for_an_unmonitored_dependency_is_ignored(ok: bool) -> None:
    deps = DependencyMonitor([], None)
    deps.report(EMBEDDINGS, ok)
    assert deps.states() == {} and deps.down() == []


class Usage:
    """`shutil.disk_usage` for the data directory probe: blocks while `hung` is not set
    (a dead network mount), counting how many checks started."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.calls = 0
        self.started = threading.Event()
        self.released = threading.Event()

    def __call__(self, _path: Path) -> Any:
        self.calls += 1
        self.started.set()
        self.released.wait()
        return type("Usage", (), {"free": self.free})()


async def test_the_data_directory_probe_writes_and_reports_a_full_disk(tmp_path: Path) -> None:
    usage = Usage(free=10**12)
    usage.released.set()
    deps = DependencyMonitor([Dependency(DATA_DIR, data_dir_probe(tmp_path, usage=usage),
                                         "data_dir_unwritable")], clock=Clock())
    assert await deps.probe(DATA_DIR) is True
    assert list(tmp_path.iterdir()) == []  # the probe file is gone again
    usage.free = 0
    assert await deps.probe(DATA_DIR) is False
    assert "disk_full" in deps.state(DATA_DIR).detail


async def test_a_hung_data_directory_holds_one_thread_not_one_per_probe(
        tmp_path: Path) -> None:
    """Each probe of a hung file system times out, but they all wait for the one check
    already running: no thread is stranded per probe, none from the shared pool."""
    usage = Usage(free=10**12)
    deps = DependencyMonitor([Dependency(DATA_DIR, data_dir_probe(tmp_path, usage=usage),
                                         "data_dir_unwritable")],
                             clock=Clock(), probe_timeout=0.01)
    try:
        assert await deps.probe(DATA_DIR) is False
        assert await asyncio.to_thread(usage.started.wait, 30)  # a bound against a hang
        for _ in range(4):
            assert await deps.probe(DATA_DIR) is False
            assert deps.state(DATA_DIR).detail == "unreachable: Timeout"
        assert usage.calls == 1
        probing = [t for t in threading.enumerate() if t.name == "signal-rag-data-dir-probe"]
        assert len(probing) == 1 and probing[0].daemon
        # The shared pool is free for everyone else meanwhile.
        assert await asyncio.to_thread(lambda: "free") == "free"
    finally:
        usage.released.set()
    # Back: up again (the hung check's own outcome, or a fresh check if that one settled
    # first); once settled, each probe checks anew.
    deps.probe_timeout = 30.0  # a bound against a hang, not a speed limit
    assert await deps.probe(DATA_DIR) is True
    calls = usage.calls
    assert await deps.probe(DATA_DIR) is True and usage.calls == calls + 1
