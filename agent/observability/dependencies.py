"""The bot's dependencies besides signal-cli: probed in the background, never fatal.

`serve` must start and say "not ready" when the embedding endpoint, the chat model server
or the shared rate-limit store (Redis) is down, not die (a normal situation in Compose,
where they may start later), and recover on its own when they come back. signal-cli has
its own reconnecting transport and monitor; this does the same for the others, and for
the data directory's file system (`data_dir`: down while it refuses writes, so messages
wait in memory or in the inbox instead of being lost, agent/inbox.py).

Each dependency has a probe (an async call that raises when the dependency is not
usable). A monitor task per dependency probes it at once, then with exponential backoff
while it is down (1 s, 2 s, 4 s … up to `backoff_cap`) and every `interval` seconds while
it is up; real traffic reports too (`report`), so a failing call marks it down at once
and a working one spares the next probe. Its state feeds `/readyz` (with the error class
as the reason), the `signal_rag_dependency_up` gauge, and an alert condition that fires
once it has been down for `alert_after` seconds and resolves when it is back. The service
waits on `wait_up` to answer the messages it kept in the inbox meanwhile.

Why our own: the job is a few timers per dependency around our alert manager; a health
check library would bring its own server and scheduler.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent.observability.alerts import AlertControl
from knowledge.embeddings import Embedder, EmbedderWrapper, Vectors

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings"
MODEL = "model"
LIMITS_STORAGE = "limits_storage"
DATA_DIR = "data_dir"
"""The data directory's file system: down while it refuses writes (full, read-only, I/O
errors); the inbox holds new messages in memory meanwhile (agent/inbox.py)."""

Probe = Callable[[], Awaitable[object]]
"""Returns when the dependency is usable; raises (any exception) when it is not."""


@dataclass(slots=True)
class DependencyState:
    up: bool | None = None
    """None until the first probe or report."""
    detail: str = "not checked yet"
    """Content-free: `reachable`, or the error class of the last failure."""
    since: float = 0.0
    """When `up` last changed (monotonic seconds)."""
    failures: int = 0
    """Failed probes in a row (paces the backoff)."""
    last_ok: float | None = None


@dataclass(frozen=True, slots=True)
class Dependency:
    name: str
    probe: Probe
    condition: str
    """The alert condition raised after `alert_after` seconds down."""
    down_word: str = "unreachable"
    """How /readyz says it is down, before the reason (`not writable: disk_full`)."""


class DependencyMonitor:
    """Probes, states and alerts of the dependencies; `report` is thread-safe (graph nodes
    run in worker threads), everything else runs on the event loop."""

    def __init__(self, dependencies: Iterable[Dependency], alerts: AlertControl | None = None,
                 *, interval: float = 30.0, alert_after: float = 120.0,
                 backoff_initial: float = 1.0, backoff_cap: float = 30.0,
                 probe_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dependencies = {d.name: d for d in dependencies}
        self._alerts = alerts
        self.interval = interval
        self.alert_after = alert_after
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.probe_timeout = probe_timeout
        self._clock = clock
        now = clock()
        self._states = {name: DependencyState(since=now) for name in self.dependencies}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._pokes = {name: asyncio.Event() for name in self.dependencies}

    # ------------------------------------------------------------------ state

    def state(self, name: str) -> DependencyState:
        with self._lock:
            state = self._states[name]
            return DependencyState(state.up, state.detail, state.since, state.failures,
                                   state.last_ok)

    def states(self) -> dict[str, DependencyState]:
        return {name: self.state(name) for name in self.dependencies}

    def up(self) -> dict[str, bool]:
        """Each dependency: True when its last probe or report succeeded."""
        return {name: state.up is True for name, state in self.states().items()}

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        """Those of `names` (default: all) known to be down; unknown ones count as up, so
        a message never waits for a probe that has not run yet."""
        wanted = self.dependencies if names is None else names
        with self._lock:
            return [n for n in wanted if n in self._states and self._states[n].up is False]

    def report(self, name: str, ok: bool, error: str | None = None) -> None:
        """What real traffic saw (thread-safe). A failure makes the probe run at once."""
        if name not in self._states:
            return
        self._update(name, ok, error)
        if not ok:
            self._call_soon(self._pokes[name].set)

    def _update(self, name: str, ok: bool, error: str | None) -> None:
        now = self._clock()
        with self._lock:
            state = self._states[name]
            changed = state.up is not ok
            if changed:
                state.since = now
            state.up = ok
            word = self.dependencies[name].down_word
            state.detail = "reachable" if ok else f"{word}: {error or 'error'}"
            state.failures = 0 if ok else state.failures + 1
            if ok:
                state.last_ok = now
            down_for = now - state.since
        if changed:
            if ok:
                log.info("dependency_up", extra={"dependency": name})
            else:
                log.warning("dependency_down", extra={"dependency": name, "error": error})
            self._call_soon(self._changed.set)
        self._alert(name, ok, down_for, error)

    def _alert(self, name: str, ok: bool, down_for: float, error: str | None) -> None:
        if self._alerts is None:
            return
        condition = self.dependencies[name].condition
        if ok:
            self._alerts.resolve(condition)
        elif down_for >= self.alert_after:
            self._alerts.alert(condition, dependency=name, down_s=f"{down_for:.0f}",
                               error=error or "error")

    def _call_soon(self, callback: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(callback)

    # ------------------------------------------------------------------ waiting

    async def wait_up(self, names: Iterable[str], timeout: float) -> bool:
        """Wait until none of `names` is down; False when `timeout` seconds passed first."""
        wanted = list(names)
        self._loop = self._loop or asyncio.get_running_loop()
        deadline = self._clock() + timeout
        while self.down(wanted):
            left = deadline - self._clock()
            if left <= 0:
                return False
            self._changed.clear()
            if not self.down(wanted):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=left)
        return True

    # ------------------------------------------------------------------ probing

    async def probe(self, name: str) -> bool:
        """Probe one dependency now and record the outcome; True when it is up."""
        try:
            await asyncio.wait_for(self.dependencies[name].probe(), self.probe_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
            error = "Timeout" if isinstance(exc, TimeoutError) \
                else exc.reason if isinstance(exc, DataDirUnwritable) else type(exc).__name__
            self._update(name, False, error)
            return False
        self._update(name, True, None)
        return True

    def next_delay(self, name: str) -> float:
        state = self.state(name)
        if state.up is False:
            return float(min(self.backoff_cap,
                             self.backoff_initial * 2 ** max(0, state.failures - 1)))
        return self.interval

    async def _watch(self, name: str, stop: asyncio.Event) -> None:
        poke = self._pokes[name]
        while not stop.is_set():
            state = self.state(name)
            recently_ok = state.up and state.last_ok is not None \
                and self._clock() - state.last_ok < self.interval
            if not recently_ok:
                try:
                    await self.probe(name)
                except Exception as exc:  # noqa: BLE001 - never let a watcher die
                    log.error("dependency_probe_failed", extra={"dependency": name,
                                                                 "error": type(exc).__name__})
            poke.clear()
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(poke.wait())}
            try:
                await asyncio.wait(waits, timeout=self.next_delay(name),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every dependency until `stop`."""
        self._loop = asyncio.get_running_loop()
        if not self.dependencies:
            return
        await asyncio.gather(*(self._watch(name, stop) for name in self.dependencies))


# ------------------------------------------------------------------ probes


class DimensionMismatch(Exception):  # noqa: N818 - the reason shown in /readyz
    """The endpoint answers with vectors of another size than the loaded index's."""


def _async_openai(base_url: str | None, api_key: SecretStr | None, timeout: float) -> Any:
    from openai import AsyncOpenAI

    # One short attempt: the monitor's backoff is the retry layer for probes.
    return AsyncOpenAI(base_url=base_url, timeout=timeout, max_retries=0,
                       api_key=api_key.get_secret_value() if api_key else "not-needed")


def embeddings_probe(base_url: str | None, api_key: SecretStr | None, model: str, *,
                     timeout: float, index_dimension: Callable[[], int | None]) -> Probe:
    """Embed one short text; the endpoint is usable when it returns a vector of the loaded
    index's size (a wrong size is reported, as `DimensionMismatch`, not hidden)."""
    client = _async_openai(base_url, api_key, timeout)

    async def probe() -> None:
        response = await client.embeddings.create(model=model, input=["readiness probe"])
        size = len(response.data[0].embedding)
        expected = index_dimension()
        if expected is not None and size != expected:
            raise DimensionMismatch
    return probe


def models_probe(base_url: str | None, api_key: SecretStr | None, *,
                 timeout: float) -> Probe:
    """`GET /models`: free, and answered by OpenAI and the usual local servers. A server
    without that route (404/405) still answered, so it is up; a refused key is not."""
    client = _async_openai(base_url, api_key, timeout)

    async def probe() -> None:
        import openai

        try:
            await client.models.list()
        except openai.APIStatusError as exc:
            if exc.status_code not in (404, 405):
                raise
    return probe


def storage_probe(url: str, *, timeout: float) -> Probe:
    """The rate-limit storage's own health check (a Redis PING), off the event loop."""
    from agent.ratelimit import open_storage

    storage = open_storage(url, timeout=timeout)

    async def probe() -> None:
        if not await asyncio.to_thread(storage.check):
            raise ConnectionError
    return probe


PROBE_FILE = ".write-probe"
PROBE_BYTES = 64 * 1024
PROBE_MIN_FREE = 4 * 2 ** 20
"""The data directory counts as writable with at least this much free: a little over what
one message's writes need (inbox, outbox, memory, audit, log), so a probe that passes is
not followed at once by the next write failing."""


def storage_error(exc: BaseException) -> str | None:
    """The content-free reason when `exc` (or what caused it) is the file system refusing a
    write: `disk_full`, `quota_exceeded`, `read_only`, `io_error`; None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            reason = _ERRNO_REASONS.get(current.errno or 0)
            if reason:
                return reason
        if isinstance(current, sqlite3.OperationalError):
            code = getattr(current, "sqlite_errorcode", None)
            if isinstance(code, int):
                reason = _SQLITE_REASONS.get(code & 0xFF)  # extended codes: the low byte
                if reason:
                    return reason
        current = current.__cause__ or current.__context__
    return None


_ERRNO_REASONS = {errno.ENOSPC: "disk_full", errno.EDQUOT: "quota_exceeded",
                  errno.EROFS: "read_only", errno.EIO: "io_error"}
_SQLITE_REASONS = {sqlite3.SQLITE_FULL: "disk_full", sqlite3.SQLITE_READONLY: "read_only",
                   sqlite3.SQLITE_IOERR: "io_error"}


class DataDirUnwritable(Exception):  # noqa: N818 - the reason shown in /readyz
    """The data directory's file system refuses writes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def data_dir_probe(path: Path, *, min_free: int = PROBE_MIN_FREE,
                   usage: Callable[[Path], Any] = shutil.disk_usage) -> Probe:
    """Writable when at least `min_free` bytes are free and a small file can be written,
    synced and removed there (off the event loop, one check at a time: a probe made while
    a check still runs waits for that one, so a hung file system shows as `Timeout`).
    Raises DataDirUnwritable, whose message (`disk_full`, `read_only` …) /readyz shows."""
    def check() -> None:
        if int(usage(path).free) < min_free:
            raise DataDirUnwritable("disk_full")
        probe = path / PROBE_FILE
        try:
            with probe.open("wb") as handle:
                handle.write(b"\0" * PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise DataDirUnwritable(storage_error(exc) or type(exc).__name__) from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    in_flight: asyncio.Future[None] | None = None

    async def run() -> None:
        # A file system that hangs (a dead network mount) never returns from the check.
        # One check at a time, in a daemon thread of its own: later probes time out
        # waiting for the same check instead of stranding a thread each, the shared
        # thread pool (which the bot's own `asyncio.to_thread` calls need) keeps its
        # threads, and a stuck check does not keep the process from exiting.
        nonlocal in_flight
        if in_flight is None or in_flight.done() \
                or in_flight.get_loop() is not asyncio.get_running_loop():
            in_flight = in_daemon_thread(check, name="signal-rag-data-dir-probe")
        await asyncio.shield(in_flight)
    return run


def in_daemon_thread(call: Callable[[], None], *, name: str) -> asyncio.Future[None]:
    """Run `call` in a new daemon thread; the future (asyncio's wrap of a
    `concurrent.futures.Future`, which carries the outcome across threads and copes with a
    closed loop) completes with its outcome, and nobody is warned about an outcome no
    caller waited for."""
    outcome: concurrent.futures.Future[None] = concurrent.futures.Future()

    def target() -> None:
        try:
            call()
            outcome.set_result(None)
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome.set_exception(exc)
        finally:  # settled whatever happens, so no probe waits for ever
            if not outcome.done():
                outcome.set_exception(RuntimeError(f"{name} ended without an outcome"))

    threading.Thread(target=target, name=name, daemon=True).start()
    future = asyncio.wrap_future(outcome)
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


class ReportingEmbedder(EmbedderWrapper):
    """Tells the monitor what each real query embedding saw, so a failing endpoint is
    known at once (and the message that met it waits for it), and a working one spares
    the next probe."""

    def __init__(self, inner: Embedder, monitor: DependencyMonitor) -> None:
        super().__init__(inner)
        self._monitor = monitor

    def embed_query(self, text: str) -> Vectors:
        try:
            vectors = self.inner.embed_query(text)
        except Exception as exc:
            self._monitor.report(EMBEDDINGS, False, type(exc).__name__)
            raise
        self._monitor.report(EMBEDDINGS, True)
        return vectors
