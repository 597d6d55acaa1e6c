"""Render docs/configuration.md from the settings model, so the reference cannot drift.

    python -m agent.config_doc [PATH]     (`make config-doc` writes docs/configuration.md)

The model in agent/settings.py is the source: each group's title (`model_config`) is a
section heading and its docstring the section's introduction; each field's description,
default (or documented default, `DOC_DEFAULT`), constraints and secrecy make a table row.
Variables read outside the model (the secrets folder, OpenTelemetry, the container entry
point) are listed here, each with the code that reads it; tests/unit/project/test_docs.py checks
that the file equals `render()`, that every field is described and that those places
really read the extra variables.
"""

from __future__ import annotations

import inspect
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from agent.settings import DEFAULT_SECRETS_DIR, DOC_DEFAULT, ENV_PREFIX, Settings

EXIT_USAGE = 2
NESTING = str(Settings.model_config.get("env_nested_delimiter"))


@dataclass(frozen=True)
class ExtraVariable:
    """An environment variable the settings model does not own.

    `read_by` names what reads it: repository files, or `module:dotted.name` for a
    library (the test looks for the name in the code there, not in comments or docs)."""

    name: str
    default: str
    meaning: str
    read_by: tuple[str, ...]
    secret: bool = False


@dataclass(frozen=True)
class ExtraSection:
    """A section of variables read outside the settings model."""

    title: str
    intro: str
    variables: tuple[ExtraVariable, ...]


@dataclass(frozen=True)
class Group:
    """One settings model and the environment prefix of its fields."""

    model: type[BaseModel]
    prefix: str
    path: str  # dotted field path from Settings; "" for Settings itself


SECRETS_DIR = ExtraVariable(
    f"{ENV_PREFIX}SECRETS_DIR", f"`{DEFAULT_SECRETS_DIR}` when it exists",
    "folder of Docker secrets files; an explicit value that is not a folder is an error",
    ("agent/settings.py", "docker/entrypoint.sh"))
OPENAI_API_KEY = ExtraVariable(
    "OPENAI_API_KEY", "none",
    f"used as `{ENV_PREFIX}LLM{NESTING}API_KEY` when that is not set",
    ("agent/settings.py",), secret=True)

# Extra rows appended to the table of a settings group, by the group's path.
GROUP_EXTRAS: dict[str, tuple[ExtraVariable, ...]] = {
    "": (SECRETS_DIR,),
    "llm": (OPENAI_API_KEY,),
}

TRACING = ExtraSection(
    "Tracing (OBS-3, standard OpenTelemetry variables)",
    "`serve` reads the standard OpenTelemetry variables; nothing leaves the process unless an\n"
    "operator sets them. Spans carry no message text (ids are HMACs, errors class names).",
    (
        ExtraVariable("OTEL_TRACES_EXPORTER", "`none`",
                      "`otlp` (to a collector), `console` (stderr) or `none`",
                      ("agent/observability/tracing.py",)),
        ExtraVariable("OTEL_EXPORTER_OTLP_PROTOCOL", "`http/protobuf`",
                      "`http/protobuf` or `grpc` (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` wins "
                      "if set; `grpc` needs the `otlp-grpc` extra, not in the image)",
                      ("agent/observability/tracing.py",)),
        ExtraVariable("OTEL_EXPORTER_OTLP_ENDPOINT",
                      "`http://localhost:4318` (http) / `:4317` (grpc)",
                      "the collector; read by the OpenTelemetry exporter itself",
                      ("module:opentelemetry.exporter.otlp.proto.http._common",)),
        ExtraVariable("OTEL_SERVICE_NAME", "`signal-rag`", "`service.name` of the spans",
                      ("agent/observability/tracing.py",)),
    ),
)

CONTAINER = ExtraSection(
    "Container start-up (docker/entrypoint.sh)",
    "Read by the image's entry point before the command starts; see docs/docker.md,\n"
    f'"Start-up". It also turns every `NAME_FILE` variable (for `{ENV_PREFIX}*` and\n'
    "`OPENAI_API_KEY`) into `NAME`, read from that file; a variable set both ways, or a\n"
    "missing, unreadable or empty file, is an error (exit code 2). The compose file's own\n"
    "variables (`.env`) are in docs/docker.md and .env.example.",
    (
        ExtraVariable(f"{ENV_PREFIX}DOCUMENTS_DIR", "`/documents`",
                      "documents `serve` ingests on its first start, when there is no index "
                      "yet (neither `manifest.json` nor a `.last-good` copy)",
                      ("docker/entrypoint.sh",)),
        ExtraVariable(f"{ENV_PREFIX}AUTO_INGEST", "`true`",
                      "`false`: no ingest on first start", ("docker/entrypoint.sh",)),
        ExtraVariable(f"{ENV_PREFIX}CHECK_CONFIG", "`check_config.py` beside the entry point",
                      "the configuration check run before the command (docker/check_config.py)",
                      ("docker/entrypoint.sh",)),
        ExtraVariable(f"{ENV_PREFIX}PYTHON", "`python3` (the image sets its venv's)",
                      "interpreter that runs the configuration check",
                      ("docker/entrypoint.sh",)),
    ),
)

BACKUP = ExtraSection(
    "Backup (`signal-rag backup`, docs/backup.md)",
    "Read by `signal-rag backup create` and `restore` only; the bot itself never touches\n"
    "signal-cli's data.",
    (
        ExtraVariable(f"{ENV_PREFIX}SIGNAL_CLI_DIR", "none",
                      "signal-cli's data folder (its `--config` folder: the account's keys) to "
                      "include in a backup or restore; `--signal-cli-dir` wins",
                      ("agent/backup/format.py",)),
    ),
)

EXTRA_SECTIONS: tuple[ExtraSection, ...] = (TRACING, CONTAINER, BACKUP)

INTRO = """# Configuration reference

<!-- Generated from agent/settings.py by `make config-doc`: edit the model, not this file. -->

All settings come from environment variables with the prefix `SIGNAL_RAG_`; nested
settings use `__` (for example `SIGNAL_RAG_LLM__MODEL`). Secrets can also come from
Docker secrets files: a file named like the variable (any case) directly inside
`/run/secrets` (or the folder named by `SIGNAL_RAG_SECRETS_DIR`), e.g.
`/run/secrets/signal_rag_llm__api_key`. Only files whose names start with `signal_rag_`
are read, so the folder may hold other programs' secrets; one of ours that is not UTF-8
text is an error naming the file. An environment variable wins over its secret file (the
container's entry point refuses such a clash instead, see below). Settings are validated
at start; an invalid value stops the program with exit code 2 and a message naming the
variable.

In the tables, *secret* marks a value held as a secret (masked when the settings are
printed), and "allowed:" gives the values or the range a setting accepts.
"""

EXIT_CODES = """## Exit codes

`0` ok · `1` ingest finished but skipped unreadable documents · `2` usage or configuration
error · `3` index missing, damaged, or built with another embedding model · `4` unexpected
internal error: one line on stderr naming the command, the failing module and the error
class, never a value. `SIGNAL_RAG_DEBUG=1` adds the traceback (no local variables; secrets,
phone numbers and keys masked, but an error's message may quote the text being handled: use
it on a machine you control).
"""


def groups(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX,
           path: str = "") -> list[Group]:
    """The model and every nested settings model, depth first in field order."""
    found = [Group(model, prefix, path)]
    for name, info in model.model_fields.items():
        nested = _nested_model(info)
        if nested is not None:
            found += groups(nested, f"{prefix}{name.upper()}{NESTING}",
                            f"{path}.{name}".lstrip("."))
    return found


def extra_variables() -> list[ExtraVariable]:
    """Every documented variable that is not a settings field."""
    found = [v for extras in GROUP_EXTRAS.values() for v in extras]
    return found + [v for section in EXTRA_SECTIONS for v in section.variables]


def undocumented(model: type[BaseModel] = Settings) -> list[str]:
    """Variables without a description and groups without a title: what CI refuses."""
    missing = []
    for group in groups(model):
        if not group.model.model_config.get("title"):
            missing.append(f"{group.model.__name__} (no title)")
        missing += [f"{group.prefix}{name.upper()}" for name, info in _leaves(group)
                    if not (info.description or "").strip()]
    return missing


def render(model: type[BaseModel] = Settings) -> str:
    """The whole of docs/configuration.md (`model` is Settings but in tests)."""
    missing = undocumented(model)
    if missing:
        raise ValueError(f"settings without a description or title: {', '.join(missing)}")
    parts = [INTRO]
    for group in groups(model):
        title = str(group.model.model_config.get("title"))
        intro = inspect.cleandoc(group.model.__doc__ or "") if group.path else ""
        rows = table_rows(group) + [_extra_row(v) for v in GROUP_EXTRAS.get(group.path, ())]
        parts.append(_section(title, intro, rows))
    for section in EXTRA_SECTIONS:
        parts.append(_section(section.title, section.intro,
                              [_extra_row(v) for v in section.variables]))
    parts.append(EXIT_CODES)
    return "\n".join(parts)


def table_rows(group: Group) -> list[str]:
    """One Markdown table row per plain (not nested) field of the group."""
    rows = []
    for name, info in _leaves(group):
        meaning = (info.description or "").strip()
        if _is_secret(info.annotation):
            meaning = f"*secret*; {meaning}"
        allowed = _allowed(info)
        if allowed:
            meaning = f"{meaning}; allowed: {allowed}"
        rows.append(_row(f"{group.prefix}{name.upper()}", _default(name, info), meaning))
    return rows


def _section(title: str, intro: str, rows: list[str]) -> str:
    head = f"## {title}\n\n" + (f"{intro}\n\n" if intro else "")
    table = "| variable | default | meaning |\n| --- | --- | --- |\n"
    return head + table + "".join(row + "\n" for row in rows)


def _row(name: str, default: str, meaning: str) -> str:
    cells = (f"`{name}`", default, meaning)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _extra_row(variable: ExtraVariable) -> str:
    meaning = f"*secret*; {variable.meaning}" if variable.secret else variable.meaning
    return _row(variable.name, variable.default, meaning)


def _nested_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _leaves(group: Group) -> list[tuple[str, FieldInfo]]:
    return [(name, info) for name, info in group.model.model_fields.items()
            if _nested_model(info) is None]


def _members(annotation: Any) -> tuple[Any, ...]:
    """The annotation and, for a union such as `X | None`, its members."""
    return (annotation, *typing.get_args(annotation))


def _is_secret(annotation: Any) -> bool:
    return any(member is SecretStr for member in _members(annotation))


def _default(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and DOC_DEFAULT in extra:
        return str(extra[DOC_DEFAULT])
    value = info.default
    if value is None:
        return "none"
    if value == "":
        return "empty"
    text = f"`{_value(value)}`"
    if name.endswith("_bytes") and isinstance(value, int) and value % 2**20 == 0:
        text += f" ({value // 2**20} MB)"
    return text


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _allowed(info: FieldInfo) -> str:
    """Literal choices not already named in the description, numeric ranges, lengths."""
    choices = [value for member in _members(info.annotation)
               if typing.get_origin(member) is typing.Literal
               for value in typing.get_args(member)]
    description = info.description or ""
    if choices and not all(f"`{choice}`" in description for choice in choices):
        return "one of " + ", ".join(f"`{choice}`" for choice in choices)
    low = high = ""
    inclusive_low = inclusive_high = True
    shortest = longest = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = _value(rule.ge)
        elif isinstance(rule, annotated_types.Gt):
            low, inclusive_low = _value(rule.gt), False
        elif isinstance(rule, annotated_types.Le):
            high = _value(rule.le)
        elif isinstance(rule, annotated_types.Lt):
            high, inclusive_high = _value(rule.lt), False
        elif isinstance(rule, annotated_types.MinLen):
            shortest = rule.min_length
        elif isinstance(rule, annotated_types.MaxLen):
            longest = rule.max_length
    if shortest is not None or longest is not None:
        return _range("" if shortest is None else str(shortest),
                      "" if longest is None else str(longest), True, True) + " characters"
    return _range(low, high, inclusive_low, inclusive_high)


def _range(low: str, high: str, inclusive_low: bool, inclusive_high: bool) -> str:
    if low and high and inclusive_low and inclusive_high:
        return f"{low} to {high}"
    parts = []
    if low:
        parts.append(f"at least {low}" if inclusive_low else f"above {low}")
    if high:
        parts.append(f"at most {high}" if inclusive_high else f"below {high}")
    return ", ".join(parts)


def main(argv: list[str]) -> int:
    """Print the reference, or write it to the one PATH given."""
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m agent.config_doc [PATH]", file=sys.stderr)
        return EXIT_USAGE
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
