"""Reconnect policy and connection health of the signal-cli transport (SIG-3).

Why our own rather than tenacity: the receive loop never gives up, must be observable
from a health check while it waits (state, reconnect count, last error), and tests inject
both the sleeper and the random source so no test waits for a real backoff. That is a
few lines here; tenacity's retry decorators fit single calls, not an endless loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

Sleeper = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with "equal jitter": the n-th consecutive failure waits
    between half and all of `min(cap, initial * factor**n)` seconds, so a fleet of bots
    does not reconnect in lockstep and no wait is ever near zero."""

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    rng: Callable[[], float] = field(default=random.random, compare=False)  # jitter, not crypto

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` (>= 1) consecutive failures."""
        exponent = max(failures - 1, 0)
        # Clamp the exponent so a long outage cannot overflow the float.
        ceiling = min(self.cap, self.initial * self.factor ** min(exponent, 64))
        return ceiling / 2 + self.rng() * ceiling / 2


class ConnectionState(StrEnum):
    IDLE = "idle"
    """Nothing asked for a connection yet (or an HTTP transport with no event reader)."""
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    """Waiting before the next attempt after a failure."""
    CLOSED = "closed"


@dataclass(frozen=True)
class TransportStatus:
    """A snapshot for health checks and metrics; contains no addresses or numbers."""

    state: ConnectionState
    connects: int
    """Connections (socket) or event streams (HTTP) established so far."""
    reconnects: int
    """Times an established connection or stream was lost and had to be replaced."""
    failed_attempts: int
    """Consecutive attempts that failed, or ended before the connection proved to work."""
    stale_timeouts: int
    """Times the watchdog gave up on a connection that went silent."""
    last_error: str | None
    """Class name of the latest failure."""
    last_activity: float | None
    """Clock reading of the latest byte received from the daemon."""
    subscription: int | None
    """Id of the current `subscribeReceive` subscription (socket, manual mode)."""

    @property
    def connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED


class StatusTracker:
    """Mutable counters behind TransportStatus, updated by the transport's loop.

    A connection counts as a success only once it proved to work (an SSE stream sent a
    byte of its body; a socket answered the handshake): a daemon that accepts and at once
    drops connections, or rejects our subscription, then meets a growing backoff instead
    of a reconnect storm.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.state = ConnectionState.IDLE
        self.connects = 0
        self.reconnects = 0
        self.failed_attempts = 0
        self.stale_timeouts = 0
        self.last_error: str | None = None
        self.last_activity: float | None = None
        self.subscription: int | None = None

    def snapshot(self) -> TransportStatus:
        return TransportStatus(
            state=self.state, connects=self.connects, reconnects=self.reconnects,
            failed_attempts=self.failed_attempts, stale_timeouts=self.stale_timeouts,
            last_error=self.last_error, last_activity=self.last_activity,
            subscription=self.subscription,
        )

    def connecting(self) -> None:
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.CONNECTING

    def connected(self) -> None:
        self.state = ConnectionState.CONNECTED
        self.connects += 1

    def activity(self) -> None:
        """Something arrived from the daemon."""
        self.last_activity = self.clock()

    def healthy(self) -> None:
        """The connection proved it works: the backoff starts from the beginning again."""
        self.failed_attempts = 0

    def lost(self, error: BaseException | str, *, stale: bool = False) -> None:
        """An established connection ended (or the watchdog ended it)."""
        self.reconnects += 1
        self.stale_timeouts += int(stale)
        self._failure(error)

    def failed(self, error: BaseException | str) -> None:
        """An attempt to connect failed."""
        self._failure(error)

    def _failure(self, error: BaseException | str) -> None:
        self.failed_attempts += 1
        self.subscription = None
        self.last_error = error if isinstance(error, str) else type(error).__name__
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.BACKOFF

    def closed(self) -> None:
        self.state = ConnectionState.CLOSED
        self.subscription = None
