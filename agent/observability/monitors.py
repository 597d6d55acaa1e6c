"""Alert monitors (OBS-6): turn raw signals (messages ok/failed, disk space, daemon
reachability, audit events, circuit state) into conditions that fire and resolve through
the alert manager (`agent/observability/alerts.py`), and `build_alerting`, which wires the
manager, its notifiers and the monitors as configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.observability.alerts import (
    DISK_SPACE_LOW,
    ERROR_RATE_HIGH,
    MODEL_AUTH_FAILED,
    MODEL_CIRCUIT_OPEN,
    MODEL_QUOTA_EXHAUSTED,
    SIGNAL_CLI_UNREACHABLE,
    AlertControl,
    AlertManager,
    Notifier,
    Send,
    SignalAdminNotifier,
    WebhookNotifier,
)
from graph.contract import ANSWERED, ERROR_ROUTES, RUN_EVENT, route_of

if TYPE_CHECKING:
    from agent.settings import Settings

log = logging.getLogger(__name__)


class ErrorRateMonitor:
    """Fires `error_rate_high` when more than `threshold` of the messages in the last
    `window` seconds failed, once at least `min_samples` were seen (one failed message
    of one user does not page anyone); resolves when the rate is back under it, or when
    a whole window passed without traffic. Memory: one bucket per second of the window."""

    def __init__(self, alerts: AlertControl, *, threshold: float = 0.10,
                 window: float = 300.0, min_samples: int = 20,
                 clock: Callable[[], float] = time.monotonic,
                 condition: str = ERROR_RATE_HIGH) -> None:
        if not 0 < threshold < 1 or window <= 0 or min_samples < 1:
            raise ValueError("threshold in (0, 1), window > 0, min_samples >= 1")
        self._alerts = alerts
        self.threshold = threshold
        self.window = window
        self.min_samples = min_samples
        self._clock = clock
        self.condition = condition
        self._buckets: deque[list[int]] = deque()  # [second, total, errors]
        self.firing = False

    def observe(self, ok: bool) -> None:
        now = self._clock()
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += 0 if ok else 1
        self.check(now)

    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Feed one audit event (a graph run)."""
        if event.get("event", RUN_EVENT) == RUN_EVENT:
            self.observe(str(event.get("route")) not in ERROR_ROUTES)

    def counts(self, now: float | None = None) -> tuple[int, int]:
        """(messages, errors) in the window."""
        now = self._clock() if now is None else now
        while self._buckets and self._buckets[0][0] <= now - self.window:
            self._buckets.popleft()
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def check(self, now: float | None = None) -> None:
        """Re-evaluate (also call it periodically, so a quiet bot resolves)."""
        total, errors = self.counts(now)
        if total >= self.min_samples and errors / total > self.threshold:
            self.firing = True
            self._alerts.alert(self.condition, rate=f"{errors / total:.2f}",
                               messages=str(total), errors=str(errors),
                               window_s=f"{self.window:g}")
        elif self.firing and (total == 0 or (total >= self.min_samples
                                             and errors / total <= self.threshold)):
            self.firing = False
            self._alerts.resolve(self.condition)


class DiskSpaceMonitor:
    """Fires `disk_space_low` while the data directory's file system has less than
    `min_free_bytes` free; resolves when there is enough again."""

    def __init__(self, alerts: AlertControl, path: Path, *,
                 min_free_bytes: int = 1024 ** 3,
                 usage: Callable[[Path], Any] = shutil.disk_usage,
                 condition: str = DISK_SPACE_LOW) -> None:
        self._alerts = alerts
        self.path = path
        self.min_free_bytes = min_free_bytes
        self._usage = usage
        self.condition = condition

    def check(self) -> int | None:
        """Free bytes (None when the path cannot be measured, which is logged)."""
        try:
            free = int(self._usage(self.path).free)
        except OSError as exc:
            log.error("disk_check_failed", extra={"error": type(exc).__name__})
            return None
        if free < self.min_free_bytes:
            self._alerts.alert(self.condition, free_mb=str(free // 2 ** 20),
                               min_free_mb=str(self.min_free_bytes // 2 ** 20))
        else:
            self._alerts.resolve(self.condition)
        return free

    async def run(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        await run_periodically(stop, interval, lambda: asyncio.to_thread(self.check))


class UnreachableMonitor:
    """Fires `signal_cli_unreachable` once the daemon has been unreachable for `after`
    seconds without a break; resolves at the first reachable observation."""

    def __init__(self, alerts: AlertControl, *, after: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 condition: str = SIGNAL_CLI_UNREACHABLE) -> None:
        self._alerts = alerts
        self.after = after
        self._clock = clock
        self.condition = condition
        self.down_since: float | None = None

    def observe(self, reachable: bool, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        if reachable:
            self.down_since = None
            self._alerts.resolve(self.condition)
            return
        if self.down_since is None:
            self.down_since = now
        if now - self.down_since >= self.after:
            self._alerts.alert(self.condition, down_s=f"{now - self.down_since:.0f}")

    async def run(self, stop: asyncio.Event, probe: Callable[[], Awaitable[bool]],
                  interval: float = 30.0) -> None:
        """Probe (e.g. `transport.check`) every `interval` s; a probe that raises counts as
        unreachable."""
        async def step() -> None:
            try:
                reachable = bool(await probe())
            except Exception:  # noqa: BLE001 - any failure to check is "not reachable"
                reachable = False
            self.observe(reachable)

        await run_periodically(stop, interval, step)


def model_error_condition(error: str | None, code: str | None = None) -> str | None:
    """The condition of a model error, from its class name and the API's error code.

    The openai client raises `AuthenticationError` (401) for a bad key and `RateLimitError`
    (429) both for a rate limit (`code == "rate_limit_exceeded"`) and for an exhausted quota
    (`code == "insufficient_quota"`, type `insufficient_quota`); only the code tells them
    apart. A `PermissionDeniedError` (403) is a key without access to the model.
    """
    # langchain-openai re-raises the client's errors as `OpenAI<Name>` subclasses.
    name = error.removeprefix("OpenAI") if isinstance(error, str) else error
    if name in ("AuthenticationError", "PermissionDeniedError"):
        return MODEL_AUTH_FAILED
    if code == "insufficient_quota":
        return MODEL_QUOTA_EXHAUSTED
    return None


def exception_condition(exc: BaseException) -> str | None:
    """`model_error_condition` of a raised exception (reads `.code` like the openai client
    sets it from the error body)."""
    code = getattr(exc, "code", None)
    return model_error_condition(type(exc).__name__, code if isinstance(code, str) else None)


def conditions_for_event(event: Mapping[str, Any]) -> list[str]:
    """Conditions one audit event (graph run) shows: model auth, quota, circuit open.

    Quota needs the API's error code in the event as `error_code`; with only the class name
    (`RateLimitError`) a plain rate limit and an empty quota look the same, and a rate limit
    is not paged (the error-rate monitor catches a lasting one).
    """
    found = []
    code = event.get("error_code")
    condition = model_error_condition(event.get("error"),
                                      code if isinstance(code, str) else None)
    if condition:
        found.append(condition)
    if event.get("route") == route_of("circuit_open"):
        found.append(MODEL_CIRCUIT_OPEN)
    return found


class ModelMonitor:
    """Raises model conditions from audit events and clears them when the model answers
    again (an `answered` run that called it) or the breaker closes."""

    MODEL_CONDITIONS = (MODEL_AUTH_FAILED, MODEL_QUOTA_EXHAUSTED, MODEL_CIRCUIT_OPEN)

    def __init__(self, alerts: AlertControl) -> None:
        self._alerts = alerts

    def observe_event(self, event: Mapping[str, Any]) -> None:
        conditions = conditions_for_event(event)
        for condition in conditions:
            fields = {"model": str(event.get("model", "none"))}
            if event.get("error"):
                fields["error"] = str(event["error"])
            self._alerts.alert(condition, **fields)
        timings = event.get("timings_ms")
        if event.get("route") == ANSWERED and isinstance(timings, Mapping) \
                and "generate" in timings and event.get("model") not in (None, "extractive"):
            for condition in self.MODEL_CONDITIONS:
                self._alerts.resolve(condition)

    def observe_circuit(self, state: str) -> None:
        """Feed the breaker's state (`closed`, `half_open`, `open`), e.g. every snapshot."""
        if state == "open":
            self._alerts.alert(MODEL_CIRCUIT_OPEN)
        elif state == "closed":
            self._alerts.resolve(MODEL_CIRCUIT_OPEN)


class AlertingAuditSink:
    """Passes each audit event on and feeds the monitors (like `MeteredAuditSink`)."""

    def __init__(self, inner: Any, *monitors: ModelMonitor | ErrorRateMonitor) -> None:
        self.inner = inner
        self.monitors = monitors

    def emit(self, event: Mapping[str, Any]) -> None:
        try:
            for monitor in self.monitors:
                try:
                    monitor.observe_event(event)
                except Exception as exc:  # noqa: BLE001 - the audit event must still go out
                    log.error("alert_monitor_failed", extra={"error": type(exc).__name__})
        finally:
            self.inner.emit(event)


async def run_periodically(stop: asyncio.Event, interval: float,
                           step: Callable[[], Awaitable[object]]) -> None:
    """Run `step` now and every `interval` s until `stop`; a failing step is logged."""
    while not stop.is_set():
        try:
            await step()
        except Exception as exc:  # noqa: BLE001 - retried at the next round
            log.error("monitor_step_failed", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


@dataclass(slots=True)
class Monitors:
    """The monitors `serve` runs, built together by `build_alerting`."""

    manager: AlertManager
    errors: ErrorRateMonitor
    disk: DiskSpaceMonitor
    reachability: UnreachableMonitor
    model: ModelMonitor
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    disk_interval: float = 60.0
    """Seconds between free-space checks (`SIGNAL_RAG_ALERTS__DISK_CHECK_INTERVAL`)."""
    probe_interval: float = 30.0
    """Seconds between signal-cli reachability checks and error-rate re-checks
    (`SIGNAL_RAG_ALERTS__SIGNAL_CLI_CHECK_INTERVAL`)."""

    async def aclose(self) -> None:
        for close in self.closers:
            with contextlib.suppress(Exception):
                await close()

    async def run(self, stop: asyncio.Event, probe: Callable[[], Awaitable[bool]], *,
                  circuit_state: Callable[[], str] | None = None,
                  disk_interval: float | None = None,
                  probe_interval: float | None = None) -> None:
        """Deliver alerts and run the periodic checks until `stop`; then drain the queue.

        `probe` answers whether signal-cli is reachable (`transport.check`); `circuit_state`
        reads the model breaker (`lambda: assistant.breaker.state.value`); the intervals
        default to the configured ones."""
        disk_every = self.disk_interval if disk_interval is None else disk_interval
        probe_every = self.probe_interval if probe_interval is None else probe_interval

        async def recheck_errors() -> None:
            self.errors.check()
            if circuit_state is not None:
                self.model.observe_circuit(circuit_state())

        try:
            await asyncio.gather(
                self.manager.run(stop),
                self.disk.run(stop, disk_every),
                self.reachability.run(stop, probe, probe_every),
                run_periodically(stop, probe_every, recheck_errors))
        finally:
            await self.aclose()


def build_alerting(settings: Settings, send: Send | None = None, *,
                   clock: Callable[[], float] = time.time,
                   monotonic: Callable[[], float] = time.monotonic) -> Monitors:
    """The manager, its notifiers and the monitors, as configured (`SIGNAL_RAG_ALERTS__*`).

    `send(recipient, text)` reaches admins over Signal; without it (or with no admins, or
    `signal_admins=false`) alerts go to the webhook only, and always to the log.
    """
    cfg = settings.alerts
    notifiers: list[Notifier] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    if cfg.webhook_url is not None:
        webhook = WebhookNotifier(cfg.webhook_url)
        notifiers.append(webhook)
        closers.append(webhook.aclose)
    if cfg.signal_admins and send is not None and settings.access.admin_set:
        notifiers.append(SignalAdminNotifier(send, settings.access.admin_set))
    manager = AlertManager(notifiers, cooldown=cfg.cooldown, clock=clock)
    return Monitors(
        manager=manager,
        errors=ErrorRateMonitor(manager, threshold=cfg.error_rate, window=cfg.error_window,
                                clock=monotonic),
        disk=DiskSpaceMonitor(manager, settings.data_dir,
                              min_free_bytes=cfg.min_free_disk_mb * 2 ** 20),
        reachability=UnreachableMonitor(manager, after=cfg.unreachable_minutes * 60,
                                        clock=monotonic),
        model=ModelMonitor(manager), closers=closers,
        disk_interval=cfg.disk_check_interval, probe_interval=cfg.signal_cli_check_interval)
