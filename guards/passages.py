"""The passage check, computed once per chunk of an index instead of once per retrieval.

A retrieved passage is untrusted text: it is normalised like a message (`clean_passage`)
and the threat detector runs on that form with the passage threshold. Both are pure
functions of the chunk's text, and in an index of thousands of chunks most retrievals
miss `detect`'s small LRU cache, so the check was most of the graph's own cost per
question (PERF-1). `PassageChecks` holds the result for every chunk of one index; the
application fills it ahead of time in a background thread, and the `retrieve` node looks
a passage up there before checking it itself. A chunk the fill could not check (or has
not reached yet) is checked when retrieved, so the fail-closed path stays the node's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from guards.sanitize import clean_passage
from guards.threats import ThreatVerdict, detect


@dataclass(frozen=True, slots=True)
class PassageCheck:
    text: str
    """The passage as the model may see it (normalised, invisible characters removed)."""
    hidden: bool
    """Invisible characters were removed."""
    verdict: ThreatVerdict


def check_passage(raw: str) -> PassageCheck:
    """Clean one passage and run the threat detector on it (passage threshold)."""
    text, hidden = clean_passage(raw)
    return PassageCheck(text, hidden, detect(text, "passage"))


def _check_uncached(raw: str) -> PassageCheck:
    """As `check_passage`, bypassing `detect`'s LRU, which a whole index would flush."""
    text, hidden = clean_passage(raw)
    return PassageCheck(text, hidden, detect.__wrapped__(text, "passage"))


class PassageChecks:
    """Checks of one index's chunks, keyed by the chunk's raw text."""

    def __init__(self, previous: PassageChecks | None = None) -> None:
        self._checks: dict[str, PassageCheck] = {}
        self._previous = previous
        self.done = threading.Event()
        """Set when `fill` has gone through every chunk."""

    def get(self, raw: str) -> PassageCheck | None:
        return self._checks.get(raw)

    def __len__(self) -> int:
        return len(self._checks)

    def fill(self, texts: Iterable[str]) -> None:
        """Check every text (reusing the previous index's checks of unchanged chunks)."""
        try:
            for raw in texts:
                known = self._previous.get(raw) if self._previous is not None else None
                try:
                    self._checks[raw] = known or _check_uncached(raw)
                except Exception:  # noqa: BLE001, S112 - checked (fail closed) when retrieved
                    continue
        finally:
            self._previous = None  # the old index's checks can go
            self.done.set()

    def fill_in_background(self, texts: Iterable[str]) -> threading.Thread:
        thread = threading.Thread(target=self.fill, args=(list(texts),),
                                  name="passage-checks", daemon=True)
        thread.start()
        return thread
