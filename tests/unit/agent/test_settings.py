from pathlib import Path

import pytest

from agent.settings import ConfigError, load_settings

NO_SECRETS = Path("/nonexistent-secrets-dir")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    import os

    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch):
    settings = load_settings(NO_SECRETS)
    assert settings.data_dir == Path("data")
    assert settings.index_path == Path("data/index")
    assert settings.llm.model is None and settings.embeddings.provider == "local"
    assert settings.retrieval.chunk_size == 1000 and settings.retrieval.chunk_overlap == 200


def test_index_dir_follows_data_dir(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", "/srv/bot")
    assert load_settings(NO_SECRETS).index_path == Path("/srv/bot/index")
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", "/fast/index")
    assert load_settings(NO_SECRETS).index_path == Path("/fast/index")


def test_nested_values(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_LLM__BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("SIGNAL_RAG_LLM__MODEL", "llama3")
    monkeypatch.setenv("SIGNAL_RAG_LLM__TIMEOUT", "12.5")
    settings = load_settings(NO_SECRETS)
    assert settings.llm.timeout == 12.5 and settings.llm.model == "llama3"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_LLM__TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_LLM__TIMEOUT"):
        load_settings(NO_SECRETS)


def test_bad_provider_and_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__PROVIDER", "magic")
    monkeypatch.setenv("SIGNAL_RAG_LLM__BASE_URL", "ftp://x")
    with pytest.raises(ConfigError) as info:
        load_settings(NO_SECRETS)
    assert "SIGNAL_RAG_EMBEDDINGS__PROVIDER" in str(info.value)
    assert "SIGNAL_RAG_LLM__BASE_URL" in str(info.value)


def test_openai_model_without_key_fails_fast(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_LLM__MODEL", "gpt-4o-mini")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_LLM__API_KEY"):
        load_settings(NO_SECRETS)


def test_api_key_falls_back_to_openai_api_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_LLM__MODEL", "gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    settings = load_settings(NO_SECRETS)
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(settings), "secrets never appear in reprs"


def test_docker_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "signal_rag_llm__api_key").write_text("from-secret-file")
    (tmp_path / "signal_rag_data_dir").write_text("/from/secret")
    settings = load_settings(tmp_path)
    assert settings.data_dir == Path("/from/secret")
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "from-secret-file"


def test_missing_configured_secrets_dir(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", "/does/not/exist")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_SECRETS_DIR"):
        load_settings()


def test_chunk_overlap_must_be_below_size(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_RETRIEVAL__CHUNK_SIZE", "500")
    monkeypatch.setenv("SIGNAL_RAG_RETRIEVAL__CHUNK_OVERLAP", "500")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_RETRIEVAL"):
        load_settings(NO_SECRETS)


def test_openai_embeddings_need_a_model_name(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__PROVIDER", "openai")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_EMBEDDINGS__MODEL"):
        load_settings(NO_SECRETS)


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path):
    (tmp_path / "signal_rag_data_dir").write_bytes(b"\x93\xff binary")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_SECRETS_DIR"):
        load_settings(tmp_path)


def test_a_secrets_folder_shared_with_other_programs(tmp_path: Path):
    """Only `signal_rag_*` files are read: others' binary keys and folders are ignored."""
    (tmp_path / "signal_rag_llm__api_key").write_text("from-secret-file\n")
    (tmp_path / "tls.key.der").write_bytes(b"\x30\x82\xff\xfe binary")
    (tmp_path / "other-service").mkdir()
    (tmp_path / "other-service" / "signal_rag_data_dir").write_text("/not/ours")
    (tmp_path / "..data").mkdir()  # a Kubernetes secret volume's hidden folder
    settings = load_settings(tmp_path)
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "from-secret-file"
    assert settings.data_dir == Path("data")


def test_an_unreadable_secret_file_of_ours_is_named(tmp_path: Path):
    (tmp_path / "SIGNAL_RAG_ACCESS__PASSPHRASE").write_bytes(b"\x93\xff not text")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_ACCESS__PASSPHRASE is not UTF-8 text"):
        load_settings(tmp_path)
    (tmp_path / "SIGNAL_RAG_ACCESS__PASSPHRASE").unlink()
    (tmp_path / "signal_rag_access__passphrase").mkdir()  # a folder where a file should be
    settings = load_settings(tmp_path)
    assert settings.access.passphrase is None
