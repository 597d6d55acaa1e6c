"""Fakes shared by the alert manager's and the monitors' tests."""

from __future__ import annotations

from agent.observability.alerts import Notification


class Clock:
    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.got: list[Notification] = []

    async def notify(self, notification: Notification) -> None:
        self.got.append(notification)
