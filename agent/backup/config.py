"""The settings snapshot stored under `config/` of a backup (secret values, personal lists
and URL credentials only with --include-secrets), and the audit pepper checks."""

from __future__ import annotations

import hmac
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.backup.format import PEPPER_FILE, BackupManifest, pepper_check

if TYPE_CHECKING:
    from agent.settings import Settings


def _flatten(model: Any, prefix: str) -> Iterator[tuple[str, Any, bool]]:
    """(environment variable, value, is secret) for every field of a settings model."""
    from pydantic import BaseModel, SecretStr

    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        env = prefix + name.upper()
        if isinstance(value, BaseModel):
            yield from _flatten(value, env + "__")
        else:
            secret = isinstance(value, SecretStr) or "SecretStr" in str(info.annotation)
            yield env, value, secret


def _plain(value: Any) -> Any:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value


PERSONAL_SETTINGS = frozenset({"SIGNAL_RAG_ACCESS__ALLOWED", "SIGNAL_RAG_ACCESS__ADMINS",
                               "SIGNAL_RAG_SIGNAL__ACCOUNT"})
"""Phone numbers and Signal ids in clear: treated like secrets (only with --include-secrets)."""
_TOKEN_NAME = re.compile(r"token|key|secret|pass|auth|sig|credential|session", re.IGNORECASE)


def strip_url_credentials(value: str) -> str:
    """A URL without its userinfo (`redis://:password@host`) and with the values of query
    parameters named like tokens replaced; anything else is returned as it is."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc.rpartition("@")[2]
    query = parse_qsl(parts.query, keep_blank_values=True)
    new_query = parts.query
    if any(_TOKEN_NAME.search(name) for name, _ in query):
        new_query = urlencode([(name, "REDACTED" if _TOKEN_NAME.search(name) else item)
                               for name, item in query])
    return urlunsplit((parts.scheme, netloc, parts.path, new_query, parts.fragment))


def config_snapshot(settings: Settings, environ: Mapping[str, str],
                    include_secrets: bool) -> dict[str, bytes]:
    """`settings.json` (every effective setting by its variable name) and `settings.env`
    (the variables set in the environment). Unless asked: no secret values, no phone
    numbers or ids (PERSONAL_SETTINGS), and URLs without the credentials they may carry."""
    effective: dict[str, Any] = {}
    omitted: list[str] = []
    personal: list[str] = []
    stripped: list[str] = []
    env_lines = ["# signal-rag settings of the backed-up bot (SIGNAL_RAG_* variables set "
                 "in its environment)"]
    given = {name.upper(): value for name, value in environ.items()}
    for env, value, secret in _flatten(settings, "SIGNAL_RAG_"):
        if secret and not include_secrets:
            if value is not None:
                omitted.append(env)
                env_lines.append(f"# {env}= (secret, not included)")
            continue
        if env in PERSONAL_SETTINGS and not include_secrets:
            if value:
                personal.append(env)
                env_lines.append(f"# {env}= (phone numbers or ids, not included)")
            continue
        plain = _plain(value)
        shown = plain if secret else given.get(env)
        if isinstance(plain, str) and not include_secrets:
            clean = strip_url_credentials(plain)
            if clean != plain or (shown is not None and strip_url_credentials(shown) != shown):
                stripped.append(env)
                env_lines.append(f"# {env}: credentials removed from the URL")
            plain = clean
            shown = strip_url_credentials(shown) if shown is not None else None
        effective[env] = plain
        if (secret and value is not None) or env in given:
            env_lines.append(f"{env}={shlex.quote(str(shown))}")
    document = {"settings": effective, "secrets_omitted": omitted,
                "personal_omitted": personal, "url_credentials_removed": stripped,
                "secrets_included": include_secrets}
    return {"settings.json": json.dumps(document, indent=2, sort_keys=True).encode(),
            "settings.env": ("\n".join(env_lines) + "\n").encode()}


def configured_pepper(settings: Settings) -> bytes | None:
    """SIGNAL_RAG_AUDIT__PEPPER, the pepper `serve` uses. Not the data dir's generated
    `.audit-pepper`: `ask`/`chat` create one when none is configured, so it says nothing
    about the bot's pepper when `backup create` runs without the bot's credentials."""
    if settings.audit.pepper is None:
        return None
    return settings.audit.pepper.get_secret_value().encode()


def pepper_source(settings: Settings, data_dir: Path) -> str:
    if settings.audit.pepper is not None:
        return "configured"
    return "generated-file" if (data_dir / PEPPER_FILE).is_file() else "none"


def _restored_pepper(settings: Settings, data_dir: Path) -> bytes | None:
    """The pepper the restored bot will use (as agent.audit.load_or_create_pepper
    reads it): the configured one, else the restored data dir's file."""
    pepper = configured_pepper(settings)
    if pepper is not None:
        return pepper
    path = data_dir / PEPPER_FILE
    return path.read_bytes().strip() if path.is_file() else None


def pepper_notes(manifest: BackupManifest, settings: Settings, data_dir: Path) -> list[str]:
    """What the restored bot will make of its users: they are keyed by HMAC(pepper)."""
    if manifest.pepper_check is None:
        why = {"generated-file": "the backed-up bot had no configured pepper, only a "
                                 "generated .audit-pepper file",
               "none": "the backed-up bot had no pepper"}.get(
            manifest.pepper_source or "", "it was made without SIGNAL_RAG_AUDIT__PEPPER "
                                          "configured")
        return [f"this backup has no pepper check ({why}): make sure the restored bot uses "
                "the pepper the backed-up bot used, or its users must activate again"]
    pepper = _restored_pepper(settings, data_dir)
    if pepper is None:
        return ["warning: no audit pepper is configured and this backup holds none (made "
                "without --include-secrets): set SIGNAL_RAG_AUDIT__PEPPER to the pepper the "
                "backed-up bot used, or its users, threads and memory will not be "
                "recognised (a new pepper would be generated)"]
    if hmac.compare_digest(pepper_check(pepper), manifest.pepper_check):
        return ["audit pepper: the configured pepper is the backed-up bot's"]
    return ["warning: the configured audit pepper is not the one the backup was made with: "
            "activated users, their threads and memory will not be recognised (users must "
            "activate again) unless you configure the original SIGNAL_RAG_AUDIT__PEPPER"]
