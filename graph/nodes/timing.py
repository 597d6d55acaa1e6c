"""Per-node latency, measured with the injected clock so tests can fix time."""

from __future__ import annotations

from collections.abc import Callable


def elapsed_ms(clock: Callable[[], float], started: float) -> float:
    return round((clock() - started) * 1000.0, 3)
