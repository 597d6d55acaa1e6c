"""Anomaly rules (OBS-7): each detector with explicit timestamps, the report interval, the
mute, bounded memory, and the adapter to audit events, metrics and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.anomaly_rules import (
    GLOBAL,
    Anomaly,
    AnomalyConfig,
    AnomalyDetector,
    AnomalyKind,
    MessageFacts,
    parse_off_hours,
)
from agent.audit import MemoryAuditSink
from agent.observability.anomalies import (
    AnomalyRecorder,
    anomaly_event,
    build_detector,
    detector_config,
)
from agent.observability.metrics import BotMetrics
from agent.settings import AnomalySettings, ConfigError, load_settings

T0 = 1_764_000_000.0  # a Monday, 16:00 UTC


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_"):
            monkeypatch.delenv(name)


def kinds(found: list[Anomaly]) -> list[tuple[str, str]]:
    return [(a.kind.value, a.reason) for a in found]


def msg(user: str = "u1", at: float = T0, length: int = 40, **flags: bool) -> MessageFacts:
    return MessageFacts(user=user, at=at, length=length, **flags)


def test_ordinary_messages_are_not_anomalies():
    detector = AnomalyDetector()
    for i in range(7):
        assert detector.observe(msg(at=T0 + 60 * i, length=30 + i)) == []


def test_long_message_over_the_threshold():
    detector = AnomalyDetector(AnomalyConfig(long_message_chars=1000))
    assert detector.observe(msg(length=999)) == []
    found = detector.observe(msg(user="u2", length=1000))
    assert kinds(found) == [("long_message", "over_threshold")]
    assert found[0].user == "u2" and found[0].value == 1000 and found[0].limit == 1000


def test_long_message_against_the_users_own_median():
    detector = AnomalyDetector(AnomalyConfig(median_factor=5, median_min_samples=5,
                                             median_min_chars=300))
    for i in range(4):
        detector.observe(msg(at=T0 + i * 60, length=80))
    assert detector.observe(msg(at=T0 + 300, length=900)) == [], "too few samples yet"
    detector = AnomalyDetector(AnomalyConfig(median_factor=5, median_min_samples=5,
                                             median_min_chars=300))
    for i in range(5):
        detector.observe(msg(at=T0 + i * 60, length=80))
    assert detector.observe(msg(at=T0 + 400, length=399)) == [], "under 5 × median"
    found = detector.observe(msg(at=T0 + 500, length=400))
    assert kinds(found) == [("long_message", "over_user_median")] and found[0].limit == 400
    # short users: 5 × a median of 3 characters is not unusual
    terse = AnomalyDetector()
    for i in range(10):
        terse.observe(msg(user="t", at=T0 + i * 60, length=3))
    assert terse.observe(msg(user="t", at=T0 + 700, length=200)) == []


def test_burst_of_n_messages_in_t_seconds():
    detector = AnomalyDetector(AnomalyConfig(burst_messages=4, burst_seconds=10))
    for i in range(3):
        assert detector.observe(msg(at=T0 + i)) == []
    assert kinds(detector.observe(msg(at=T0 + 3))) == [("burst", "messages_in_window")]
    slow = AnomalyDetector(AnomalyConfig(burst_messages=4, burst_seconds=10))
    assert all(slow.observe(msg(at=T0 + 4 * i)) == [] for i in range(10)), "4 in 12 s is fine"


def test_global_burst_across_users():
    detector = AnomalyDetector(AnomalyConfig(global_burst_messages=50, global_burst_seconds=10,
                                             burst_messages=10))
    found = []
    for i in range(50):
        found += detector.observe(msg(user=f"u{i}", at=T0 + i * 0.1))
    assert kinds(found) == [("global_burst", "messages_in_window")]
    assert found[0].user == GLOBAL


def test_off_hours_in_a_time_zone_wrapping_midnight():
    config = AnomalyConfig(off_hours=(22, 6), timezone="Europe/Berlin", report_interval=0)
    detector = AnomalyDetector(config)
    berlin = ZoneInfo("Europe/Berlin")

    def at(hour: int) -> float:
        return datetime(2026, 1, 15, hour, 30, tzinfo=berlin).timestamp()

    assert detector.observe(msg(at=at(21))) == []
    for hour in (22, 23, 0, 5):
        found = detector.observe(msg(at=at(hour)))
        assert kinds(found) == [("off_hours", "outside_usual_hours")] and found[0].value == hour
    assert detector.observe(msg(at=at(6))) == []
    assert detector.observe(msg(at=at(12))) == []
    day = AnomalyDetector(AnomalyConfig(off_hours=(9, 17), report_interval=0))  # UTC
    assert kinds(day.observe(msg(at=T0))) == [("off_hours", "outside_usual_hours")]  # 16:00
    assert AnomalyDetector().observe(msg(at=at(3))) == [], "off by default"


def test_repeated_blocks_report_without_mute_by_default():
    detector = AnomalyDetector(AnomalyConfig(block_count=3, block_seconds=60))
    assert detector.observe(msg(at=T0, blocked=True)) == []
    assert detector.observe(msg(at=T0 + 10, blocked=True)) == []
    found = detector.observe(msg(at=T0 + 20, blocked=True))
    assert kinds(found) == [("repeated_blocks", "blocks_in_window")]
    assert found[0].muted_until is None and not detector.is_muted("u1", T0 + 21)


def test_repeated_blocks_outside_the_window_do_not_count():
    detector = AnomalyDetector(AnomalyConfig(block_count=3, block_seconds=60))
    for i in range(6):
        assert detector.observe(msg(at=T0 + 40 * i, blocked=True)) == []


def test_mute_after_k_blocks_for_m_minutes():
    config = AnomalyConfig(block_count=3, block_seconds=60, mute=True, mute_seconds=600,
                           report_interval=3600)
    detector = AnomalyDetector(config)
    for i in range(2):
        detector.observe(msg(at=T0 + i, blocked=True))
    found = detector.observe(msg(at=T0 + 2, blocked=True))
    assert kinds(found) == [("repeated_blocks", "muted")] and found[0].muted_until == T0 + 602
    assert detector.is_muted("u1", T0 + 601)
    assert not detector.is_muted("u1", T0 + 602)
    assert not detector.is_muted("someone-else", T0 + 10)
    # three fresh blocks after the mute mute again, reported despite the report interval
    for i in range(2):
        assert detector.observe(msg(at=T0 + 700 + i, blocked=True)) == []
    again = detector.observe(msg(at=T0 + 702, blocked=True))
    assert kinds(again) == [("repeated_blocks", "muted")]
    detector.forget("u1")
    assert not detector.is_muted("u1", T0 + 703)


def test_probing_many_new_users_with_blocked_first_messages():
    detector = AnomalyDetector(AnomalyConfig(probe_users=3, probe_seconds=120))
    assert detector.observe(msg(user="a", at=T0, blocked=True, new_user=True)) == []
    # the same user again, a blocked message of a known user, a new user not blocked:
    assert detector.observe(msg(user="a", at=T0 + 1, blocked=True, new_user=True)) == []
    assert detector.observe(msg(user="old", at=T0 + 2, blocked=True)) == []
    assert detector.observe(msg(user="nice", at=T0 + 3, new_user=True)) == []
    assert detector.observe(msg(user="b", at=T0 + 4, blocked=True, new_user=True)) == []
    found = detector.observe(msg(user="c", at=T0 + 5, blocked=True, new_user=True))
    assert kinds(found) == [("probing", "new_users_blocked")] and found[0].user == GLOBAL
    slow = AnomalyDetector(AnomalyConfig(probe_users=3, probe_seconds=120))
    for i, user in enumerate("xyz"):
        assert slow.observe(msg(user=user, at=T0 + 100 * i, blocked=True, new_user=True)) == []


def test_each_kind_is_reported_once_per_interval_per_user():
    detector = AnomalyDetector(AnomalyConfig(long_message_chars=100, report_interval=600))
    assert len(detector.observe(msg(at=T0, length=500))) == 1
    assert detector.observe(msg(at=T0 + 100, length=500)) == []
    assert len(detector.observe(msg(user="u2", at=T0 + 100, length=500))) == 1
    assert len(detector.observe(msg(at=T0 + 600, length=500))) == 1


def test_memory_is_bounded_with_lru_eviction():
    detector = AnomalyDetector(AnomalyConfig(max_users=100, history=10, burst_messages=5))
    for i in range(10_000):
        detector.observe(msg(user=f"user-{i}", at=T0 + i, length=i % 50))
        detector.observe(msg(user="regular", at=T0 + i, length=20))
    assert detector.tracked_users == 100
    assert "regular" in detector._users, "a recently seen user stays"
    assert "user-0" not in detector._users
    state = detector._users["regular"]
    assert len(state.lengths) == 10 and len(state.times) == 5
    assert len(detector._global_times) <= detector.config.global_burst_messages


@pytest.mark.parametrize("bad", [{"burst_messages": 0}, {"burst_seconds": 0},
                                 {"off_hours": (5, 5)}, {"off_hours": (25, 3)},
                                 {"max_users": 0}, {"report_interval": -1}])
def test_config_is_validated(bad: dict[str, Any]):
    with pytest.raises(ValueError, match=r"must"):
        AnomalyConfig(**bad)


def test_unknown_timezone_and_bad_facts():
    with pytest.raises(ValueError, match="time zone"):
        AnomalyDetector(AnomalyConfig(timezone="Mars/Olympus"))
    with pytest.raises(ValueError, match="negative"):
        AnomalyDetector().observe(msg(length=-1))


def test_parse_off_hours():
    assert parse_off_hours("") is None
    assert parse_off_hours(" 22-06 ") == (22, 6)
    for bad in ("22", "a-b", "22-22", "10-30"):
        with pytest.raises(ValueError, match="off"):
            parse_off_hours(bad)


def test_hostile_user_keys_are_only_keys():
    detector = AnomalyDetector(AnomalyConfig(long_message_chars=10))
    user = "x\r\n" * 10_000
    found = detector.observe(msg(user=user, length=10**9))
    assert found[0].user == user and found[0].value == 10**9  # stored as is, never parsed


# ----------------------------------------------------------------- settings and adapter


def test_settings_make_the_detector(monkeypatch: pytest.MonkeyPatch, tmp_path: Any):
    monkeypatch.setenv("SIGNAL_RAG_ANOMALIES__OFF_HOURS", "23-05")
    monkeypatch.setenv("SIGNAL_RAG_ANOMALIES__TIMEZONE", "America/New_York")
    monkeypatch.setenv("SIGNAL_RAG_ANOMALIES__MUTE", "true")
    monkeypatch.setenv("SIGNAL_RAG_ANOMALIES__MUTE_MINUTES", "15")
    settings = load_settings(tmp_path / "none")
    config = detector_config(settings.anomalies)
    assert config.off_hours == (23, 5) and config.timezone == "America/New_York"
    assert config.mute and config.mute_seconds == 900
    assert build_detector(settings.anomalies) is not None
    assert build_detector(AnomalySettings(enabled=False)) is None


@pytest.mark.parametrize(("name", "value"), [("OFF_HOURS", "late"), ("TIMEZONE", "Nowhere/X"),
                                             ("BURST_MESSAGES", "1")])
def test_bad_anomaly_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                name: str, value: str):
    monkeypatch.setenv(f"SIGNAL_RAG_ANOMALIES__{name}", value)
    with pytest.raises(ConfigError, match=f"SIGNAL_RAG_ANOMALIES__{name}"):
        load_settings(tmp_path / "none")


def test_recorder_emits_audit_event_metric_and_probing_alert():
    sink, metrics = MemoryAuditSink(), BotMetrics()
    alerts: list[tuple[str, dict[str, str]]] = []

    class Alerts:
        def alert(self, condition: str, **fields: str) -> None:
            alerts.append((condition, fields))

    recorder = AnomalyRecorder(sink, metrics, Alerts())
    muted = Anomaly(AnomalyKind.REPEATED_BLOCKS, "abc", "muted", 3, 600.0, muted_until=T0)
    probing = Anomaly(AnomalyKind.PROBING, GLOBAL, "new_users_blocked", 5, 600.0)
    recorder.record([muted, probing])
    assert sink.events == [anomaly_event(muted), anomaly_event(probing)]
    assert sink.events[0] == {"event": "anomaly", "kind": "repeated_blocks", "user": "abc",
                              "reason": "muted", "value": 3, "limit": 600.0,
                              "muted_until": T0}
    assert alerts == [("attack_probing", {"users": "5", "window_s": "600"})]
    counts = {line.split('kind="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
              for line in metrics.exposition().decode().splitlines()
              if line.startswith("signal_rag_anomalies_total{")}
    assert counts == {"repeated_blocks": "1.0", "probing": "1.0"}
    metrics.shutdown()


def test_recorder_never_raises(caplog: pytest.LogCaptureFixture):
    class Broken:
        def emit(self, event: Any) -> None:
            raise OSError("disk full")

    AnomalyRecorder(Broken()).record([Anomaly(AnomalyKind.BURST, "u", "r", 1, 1)])
    assert "anomaly_record_failed" in caplog.text
