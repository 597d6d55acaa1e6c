"""The per-deployment canary (SEC-3): generated once, kept private, overridable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.assistant import CANARY_FILE, load_or_create_canary
from agent.settings import ConfigError, load_settings

NO_SECRETS = Path("/nonexistent-secrets-dir")


def test_generated_once_kept_private_and_reused(tmp_path: Path):
    first = load_or_create_canary(tmp_path / "data", None)
    path = tmp_path / "data" / CANARY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_canary(tmp_path / "data", None) == first, "same across restarts"
    assert first.startswith("SRC-") and len(first) >= 24
    assert load_or_create_canary(tmp_path / "other", None) != first, "random per deployment"


def test_configured_canary_wins_and_nothing_is_written(tmp_path: Path):
    assert load_or_create_canary(tmp_path, "my-own-canary-0123456789") == "my-own-canary-0123456789"
    assert not (tmp_path / CANARY_FILE).exists()


def test_canary_setting_is_a_secret_of_reasonable_length(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_GUARDS__CANARY", "short")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_GUARDS__CANARY"):
        load_settings(NO_SECRETS)
    monkeypatch.setenv("SIGNAL_RAG_GUARDS__CANARY", "a-long-random-canary-value")
    settings = load_settings(NO_SECRETS)
    assert settings.guards.canary is not None
    assert "a-long-random-canary-value" not in repr(settings)
    assert settings.guards.max_reply_chars == 8000
