"""Fuzzing settings from the environment and from secret files: any value gives Settings or
one ConfigError (exit 2), never another exception, and an error never quotes a secret."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from agent.settings import ENV_PREFIX, ConfigError, Settings, load_settings
from tests.fuzz import fuzz


def _leaves(model: type[BaseModel], prefix: str = ENV_PREFIX) -> Iterator[tuple[str, bool]]:
    """(environment variable, holds a secret) for every setting, nested groups included;
    the groups themselves too, since pydantic-settings reads them as JSON objects."""
    for name, info in model.model_fields.items():
        env = prefix + name.upper()
        kind: Any = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield env, False
            yield from _leaves(kind, env + "__")
        else:
            yield env, "SecretStr" in str(kind) or kind is SecretStr


SETTINGS = dict(_leaves(Settings))
SECRET_SETTINGS = sorted(name for name, secret in SETTINGS.items() if secret)
env_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                   max_size=40)
values = (env_text | st.sampled_from(["", " ", "0", "-1", "1e309", "nan", "true", "[]", "{}",
                                      "{\"x\": 1}", "{", "[1,", "null", "http://", "tcp://x",
                                      "127.0.0.1:99999", "::1", "\u2028"])
          | st.integers().map(str) | st.floats().map(str))
secret_values = env_text.filter(lambda v: len(v.strip()) >= 6).map(lambda v: "Zx9" + v)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX) or name == "OPENAI_API_KEY":
                del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _load(env: dict[str, str], secrets_dir: Path) -> str | None:
    """None when the settings loaded, else the ConfigError's message."""
    with environment(env):
        try:
            load_settings(secrets_dir)
        except ConfigError as exc:
            return str(exc)
    return None


def _quoted_secret(message: str | None, secrets: list[str]) -> list[str]:
    return [s for s in secrets if message is not None and s.strip() in message]


@fuzz()
@given(st.dictionaries(st.sampled_from(sorted(SETTINGS)), values, max_size=6),
       st.dictionaries(st.sampled_from(SECRET_SETTINGS), secret_values, max_size=3))
@example({"SIGNAL_RAG_LLM": "{"}, {})
@example({"SIGNAL_RAG_ACCESS": "[1,"}, {})
def test_any_environment_gives_settings_or_one_config_error(
        env: dict[str, str], secrets: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        message = _load({**env, **secrets}, Path(folder))
    assert not _quoted_secret(message, list(secrets.values())), message


secret_file_names = st.sampled_from(
    [name.lower() for name in SECRET_SETTINGS] + [n.lower() for n in sorted(SETTINGS)][:40]
    + ["SIGNAL_RAG_ACCESS__PASSPHRASE", "signal_rag_", "signal_rag_x", "other_program_key",
       "tls.key"])


@fuzz()
@given(st.dictionaries(secret_file_names, st.binary(max_size=40)
                       | secret_values.map(lambda v: v.encode()), max_size=5),
       st.booleans())
def test_any_secrets_folder_gives_settings_or_one_config_error(
        files: dict[str, bytes], with_subfolder: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, data in files.items():
            (root / name).write_bytes(data)
        if with_subfolder:
            (root / "signal_rag_llm").mkdir(exist_ok=True)
        message = _load({}, root)
    secret_names = {name.lower() for name in SECRET_SETTINGS}
    texts = [data.decode("utf-8", errors="ignore") for name, data in files.items()
             if name.lower() in secret_names]
    assert not _quoted_secret(message, [t for t in texts if len(t.strip()) >= 6]), message


@pytest.mark.parametrize(("env", "files", "named"), [
    ({"SIGNAL_RAG_LLM": "{"}, {}, "SIGNAL_RAG_LLM"),
    ({"SIGNAL_RAG_ACCESS": "[1,"}, {}, "SIGNAL_RAG_ACCESS"),
    ({}, {"signal_rag_audit": b""}, "SIGNAL_RAG_AUDIT"),
])
def test_a_group_set_to_a_non_json_value_is_a_config_error(
        tmp_path: Path, env: dict[str, str], files: dict[str, bytes], named: str) -> None:
    """Found by the fuzzer: pydantic-settings' SettingsError escaped load_settings, so the
    command died with an unexpected error instead of exit 2 naming the variable."""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    message = _load(env, tmp_path)
    assert message is not None and message.startswith(f"{named}: not a JSON object"), message
