"""Anomaly rules over message metadata (OBS-7): long messages, bursts, off-hours use,
repeated guard blocks from one user, and many new users probing with attacks.

Why our own code: the rules are a handful of counters over sliding windows, and they must
be pure (no I/O, the time comes with each observation) and memory bounded (per-user state
in an LRU map of at most `max_users` entries, each a few small capped deques); no library
offers that shape without a store or a stream processor behind it.

What goes in is content-free: a hashed user key, a timestamp, a length and two flags.
What comes out is an `Anomaly` with a reason code, never text. The only thing done at
construction that touches the disk is resolving the IANA time zone (zoneinfo reads the
tz database once); a bad name raises ValueError then, not later.

Failure behaviour: the detector is advisory and fails open — the caller should log and
ignore an exception from `observe` (it only raises on a programming error such as a
negative length); the mute it can impose is off by default (`AnomalyConfig.mute`).
Each kind of anomaly is reported at most once per `report_interval` per user (globally
for the global kinds), so a flood produces one event, not one per message.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

GLOBAL = "*"
"""The `user` of a global anomaly (not tied to one sender)."""


class AnomalyKind(StrEnum):
    LONG_MESSAGE = "long_message"
    BURST = "burst"
    GLOBAL_BURST = "global_burst"
    OFF_HOURS = "off_hours"
    REPEATED_BLOCKS = "repeated_blocks"
    PROBING = "probing"


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the detector may know about one message: never its text."""

    user: str
    """The HMAC of the sender's id (as in the audit log)."""
    at: float
    """Epoch seconds when the message arrived."""
    length: int
    """Characters of the message (before sanitising)."""
    blocked: bool = False
    """A guard refused it (threat rule, output guard)."""
    new_user: bool = False
    """This is the first message the bot handles from this user."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding: what, whose, why (a code) and the numbers; never content."""

    kind: AnomalyKind
    user: str
    """The hashed user, or `GLOBAL` for global anomalies."""
    reason: str
    """A short code, e.g. `over_threshold`, `over_user_median`."""
    value: float
    """The observed quantity (characters, messages, blocks, users, hour)."""
    limit: float
    """The threshold it crossed."""
    muted_until: float | None = None
    """Set when this anomaly muted the user (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Thresholds; the defaults suit a small private bot (settings override them)."""

    long_message_chars: int = 1500
    """A message at least this long is unusual for everyone."""
    median_factor: float = 5.0
    """…or at least this many times the user's own median length,"""
    median_min_chars: int = 300
    """…and at least this long (5 × a median of 4 characters is not unusual),"""
    median_min_samples: int = 5
    """…once the user has sent this many earlier messages."""
    history: int = 25
    """Message lengths kept per user for the median."""
    burst_messages: int = 8
    burst_seconds: float = 30.0
    global_burst_messages: int = 300
    global_burst_seconds: float = 60.0
    off_hours: tuple[int, int] | None = None
    """(start hour, end hour) in `timezone`, end exclusive, may wrap midnight; None: off."""
    timezone: str = "UTC"
    block_count: int = 3
    block_seconds: float = 600.0
    mute: bool = False
    """Mute a user after `block_count` blocks in `block_seconds` (off by default: a user
    rephrasing a question that trips a rule would be silenced)."""
    mute_seconds: float = 1800.0
    probe_users: int = 5
    """New users whose first message was blocked, within `probe_seconds`, that make a
    global probing anomaly."""
    probe_seconds: float = 600.0
    report_interval: float = 600.0
    """Least seconds between two reports of one kind for one user (or globally)."""
    max_users: int = 10_000
    """Users tracked at once; the least recently seen is forgotten first."""

    def __post_init__(self) -> None:
        counts = {"long_message_chars": self.long_message_chars, "history": self.history,
                  "median_min_samples": self.median_min_samples,
                  "burst_messages": self.burst_messages,
                  "global_burst_messages": self.global_burst_messages,
                  "block_count": self.block_count, "probe_users": self.probe_users,
                  "max_users": self.max_users}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        spans = {"burst_seconds": self.burst_seconds, "block_seconds": self.block_seconds,
                 "global_burst_seconds": self.global_burst_seconds,
                 "probe_seconds": self.probe_seconds, "mute_seconds": self.mute_seconds,
                 "median_factor": self.median_factor}
        for name, span in spans.items():
            if not span > 0:
                raise ValueError(f"{name} must be positive")
        if self.report_interval < 0:
            raise ValueError("report_interval must not be negative")
        if self.off_hours is not None:
            start, end = self.off_hours
            if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
                raise ValueError("off_hours must be two different hours in 0..24")


def parse_off_hours(value: str) -> tuple[int, int] | None:
    """`"22-06"` → (22, 6); empty → None; anything else raises ValueError."""
    value = value.strip()
    if not value:
        return None
    start, sep, end = value.partition("-")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise ValueError(f"off hours must look like 22-06, got {value!r}")
    hours = (int(start), int(end))
    AnomalyConfig(off_hours=hours)  # range checks
    return hours


def load_timezone(name: str) -> tzinfo:
    """An IANA zone by name, or ValueError (zoneinfo raises a KeyError subclass)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(slots=True)
class _User:
    lengths: deque[int]
    times: deque[float]
    blocks: deque[float]
    reported: dict[AnomalyKind, float] = field(default_factory=dict)
    muted_until: float = 0.0


class AnomalyDetector:
    """Feed every handled message to `observe`; ask `is_muted` before answering.

    Not thread-safe: call it from one thread (the service's event loop).
    """

    def __init__(self, config: AnomalyConfig | None = None) -> None:
        self.config = config or AnomalyConfig()
        self._zone = load_timezone(self.config.timezone)
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._global_times: deque[float] = deque(maxlen=self.config.global_burst_messages)
        self._probes: deque[tuple[float, str]] = deque(maxlen=self.config.probe_users)
        self._global_reported: dict[AnomalyKind, float] = {}

    @property
    def tracked_users(self) -> int:
        return len(self._users)

    def observe(self, facts: MessageFacts) -> list[Anomaly]:
        if facts.length < 0:
            raise ValueError("length must not be negative")
        state = self._user(facts.user)
        found: list[Anomaly] = []
        for anomaly in (self._long(state, facts), self._burst(state, facts),
                        self._off_hours(facts), self._blocks(state, facts)):
            if anomaly is not None and (self._due(state.reported, anomaly.kind, facts.at)
                                        or anomaly.muted_until is not None):
                found.append(anomaly)  # a mute is always reported
        state.lengths.append(facts.length)
        for anomaly in (self._global_burst(facts), self._probing(facts)):
            if anomaly is not None and self._due(self._global_reported, anomaly.kind, facts.at):
                found.append(anomaly)
        return found

    def is_muted(self, user: str, at: float) -> bool:
        state = self._users.get(user)
        return state is not None and at < state.muted_until

    def forget(self, user: str) -> None:
        """Drop what is kept about one user (`/forget`)."""
        self._users.pop(user, None)

    # ------------------------------------------------------------------ rules

    def _user(self, user: str) -> _User:
        state = self._users.get(user)
        if state is None:
            cfg = self.config
            state = _User(lengths=deque(maxlen=cfg.history),
                          times=deque(maxlen=cfg.burst_messages),
                          blocks=deque(maxlen=cfg.block_count))
            self._users[user] = state
            while len(self._users) > cfg.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        return state

    def _due(self, reported: dict[AnomalyKind, float], kind: AnomalyKind, at: float) -> bool:
        last = reported.get(kind)
        if last is not None and 0 <= at - last < self.config.report_interval:
            return False
        reported[kind] = at
        return True

    def _long(self, state: _User, facts: MessageFacts) -> Anomaly | None:
        cfg = self.config
        if facts.length >= cfg.long_message_chars:
            return Anomaly(AnomalyKind.LONG_MESSAGE, facts.user, "over_threshold",
                           facts.length, cfg.long_message_chars)
        if len(state.lengths) >= cfg.median_min_samples and facts.length >= cfg.median_min_chars:
            limit = cfg.median_factor * statistics.median(state.lengths)
            if facts.length >= limit:
                return Anomaly(AnomalyKind.LONG_MESSAGE, facts.user, "over_user_median",
                               facts.length, round(limit, 1))
        return None

    def _burst(self, state: _User, facts: MessageFacts) -> Anomaly | None:
        cfg = self.config
        state.times.append(facts.at)
        if len(state.times) == cfg.burst_messages and \
                facts.at - state.times[0] <= cfg.burst_seconds:
            return Anomaly(AnomalyKind.BURST, facts.user, "messages_in_window",
                           cfg.burst_messages, cfg.burst_seconds)
        return None

    def _off_hours(self, facts: MessageFacts) -> Anomaly | None:
        hours = self.config.off_hours
        if hours is None:
            return None
        hour = datetime.fromtimestamp(facts.at, UTC).astimezone(self._zone).hour
        start, end = hours
        inside = start <= hour < end if start < end else (hour >= start or hour < end)
        if inside:
            return Anomaly(AnomalyKind.OFF_HOURS, facts.user, "outside_usual_hours", hour,
                           start)
        return None

    def _blocks(self, state: _User, facts: MessageFacts) -> Anomaly | None:
        cfg = self.config
        if not facts.blocked:
            return None
        state.blocks.append(facts.at)
        if len(state.blocks) < cfg.block_count or facts.at - state.blocks[0] > cfg.block_seconds:
            return None
        muted_until = None
        if cfg.mute:
            muted_until = facts.at + cfg.mute_seconds
            state.muted_until = max(state.muted_until, muted_until)
            state.blocks.clear()  # the next mute needs K fresh blocks
        return Anomaly(AnomalyKind.REPEATED_BLOCKS, facts.user,
                       "muted" if muted_until else "blocks_in_window", cfg.block_count,
                       cfg.block_seconds, muted_until=muted_until)

    def _global_burst(self, facts: MessageFacts) -> Anomaly | None:
        cfg = self.config
        self._global_times.append(facts.at)
        if len(self._global_times) == cfg.global_burst_messages and \
                facts.at - self._global_times[0] <= cfg.global_burst_seconds:
            return Anomaly(AnomalyKind.GLOBAL_BURST, GLOBAL, "messages_in_window",
                           cfg.global_burst_messages, cfg.global_burst_seconds)
        return None

    def _probing(self, facts: MessageFacts) -> Anomaly | None:
        cfg = self.config
        if not (facts.new_user and facts.blocked):
            return None
        if any(user == facts.user for _, user in self._probes):
            return None  # one user counts once
        self._probes.append((facts.at, facts.user))
        if len(self._probes) == cfg.probe_users and \
                facts.at - self._probes[0][0] <= cfg.probe_seconds:
            return Anomaly(AnomalyKind.PROBING, GLOBAL, "new_users_blocked",
                           cfg.probe_users, cfg.probe_seconds)
        return None
