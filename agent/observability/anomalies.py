"""Anomalies (OBS-7) as operators see them: one audit event and one metric each, and an
alert for the global probing pattern. The rules live in `agent.anomaly_rules` (pure); this is
the thin adapter to the audit sink, the metrics and the alert manager.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agent.anomaly_rules import (
    Anomaly,
    AnomalyConfig,
    AnomalyDetector,
    AnomalyKind,
    parse_off_hours,
)
from agent.observability.alerts import ATTACK_PROBING

if TYPE_CHECKING:
    from agent.observability.metrics import BotMetrics
    from agent.settings import AnomalySettings

log = logging.getLogger(__name__)

ALERTED_KINDS = {AnomalyKind.PROBING: ATTACK_PROBING}
"""Anomalies that also page operators (the others are audit events and metrics only)."""


class _Sink(Protocol):
    def emit(self, event: Mapping[str, Any]) -> None: ...


class _Alerts(Protocol):
    def alert(self, condition: str, **fields: str) -> None: ...


def anomaly_event(anomaly: Anomaly) -> dict[str, Any]:
    """The audit event of one anomaly: kind, hashed user, reason code, numbers; no text."""
    event: dict[str, Any] = {"event": "anomaly", "kind": anomaly.kind.value,
                             "user": anomaly.user, "reason": anomaly.reason,
                             "value": anomaly.value, "limit": anomaly.limit}
    if anomaly.muted_until is not None:
        event["muted_until"] = round(anomaly.muted_until, 3)
    return event


def detector_config(settings: AnomalySettings) -> AnomalyConfig:
    return AnomalyConfig(
        long_message_chars=settings.long_message_chars, median_factor=settings.median_factor,
        burst_messages=settings.burst_messages, burst_seconds=settings.burst_window,
        off_hours=parse_off_hours(settings.off_hours), timezone=settings.timezone,
        block_count=settings.block_count, block_seconds=settings.block_window,
        mute=settings.mute, mute_seconds=settings.mute_minutes * 60,
        probe_users=settings.probe_users, probe_seconds=settings.probe_window)


def build_detector(settings: AnomalySettings) -> AnomalyDetector | None:
    """The configured detector, or None when `SIGNAL_RAG_ANOMALIES__ENABLED=false`."""
    return AnomalyDetector(detector_config(settings)) if settings.enabled else None


class AnomalyRecorder:
    """Records anomalies: audit event, `signal_rag.anomalies{kind}` counter, and for the
    kinds in `ALERTED_KINDS` an operator alert. Never raises (anomalies are advisory)."""

    def __init__(self, audit: _Sink, metrics: BotMetrics | None = None,
                 alerts: _Alerts | None = None) -> None:
        self.audit = audit
        self.metrics = metrics
        self.alerts = alerts

    def record(self, anomalies: Iterable[Anomaly]) -> None:
        for anomaly in anomalies:
            try:
                self.audit.emit(anomaly_event(anomaly))
                if self.metrics is not None:
                    self.metrics.anomalies.add(1, {"kind": anomaly.kind.value})
                condition = ALERTED_KINDS.get(anomaly.kind)
                if condition and self.alerts is not None:
                    self.alerts.alert(condition, users=f"{anomaly.value:g}",
                                      window_s=f"{anomaly.limit:g}")
            except Exception as exc:  # noqa: BLE001 - an anomaly must not fail a message
                log.error("anomaly_record_failed", extra={"error": type(exc).__name__})
