"""Static checks of deploy/ (DEP-4): the systemd units and the Kubernetes example manifests.

No systemd or cluster needed. The units are parsed and checked directive by directive
against what the application needs (settings names, the secrets folder, the health
address, the signal-cli command line, the Dockerfiles' uids), and against
`systemd-analyze verify` / `security --offline` when systemd is installed (skip with the
reason otherwise). The manifests are validated, strictly (unknown fields rejected),
against the Kubernetes JSON schemas bundled by the kubernetes-validate package (a dev
dependency; no download), then cross-checked the same way. tests/integration/
test_deploy_units.py runs the units' commands as plain processes.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
SYSTEMD = ROOT / "deploy" / "systemd"
KUBERNETES = ROOT / "deploy" / "kubernetes"
BOT_UNIT = SYSTEMD / "signal-rag.service"
INGEST_UNIT = SYSTEMD / "signal-rag-ingest.service"
CLI_UNIT = SYSTEMD / "signal-cli.service"
ENV_EXAMPLE = SYSTEMD / "signal-rag.env.example"
sys.path.insert(0, str(ROOT / "docker"))  # check_config.py, as the units run it
# The oldest Kubernetes with native sidecars on by default, and the newest schemas shipped.
K8S_VERSIONS = ("1.29", "latest")
# Variables the image's entrypoint reads (docker/entrypoint.sh), beside the settings.
ENTRYPOINT_VARS = set(re.findall(r"^#\s+(SIGNAL_RAG_[A-Z_]+)\s", (
    ROOT / "docker" / "entrypoint.sh").read_text(encoding="utf-8"), re.M))
# Sandbox directives both bot units must carry (the ingest unit runs the same code).
SANDBOX = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
}

Unit = dict[str, list[tuple[str, str]]]


def _env_names(model: type, prefix: str = "SIGNAL_RAG_") -> set[str]:
    """Every environment variable of the settings model (nested groups joined by __)."""
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            names |= _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


SETTINGS = _env_names(Settings)


# ----------------------------------------------------------------------------- helpers
def parse_unit(path: Path) -> Unit:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys in order."""
    sections: Unit = {}
    current = None
    logical = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = logical + raw.strip()
        if line.endswith("\\"):
            logical = line[:-1] + " "
            continue
        logical = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            assert current not in sections, f"{path.name}: section [{current}] twice"
            sections[current] = []
            continue
        assert current is not None and "=" in line, f"{path.name}: stray line {line!r}"
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected once, found {found}"
    return found[0]


def unit_environment(unit: Unit) -> dict[str, str]:
    """The unit's Environment= assignments (specifiers left as they are)."""
    env = {}
    for line in values(unit, "Service", "Environment"):
        name, _, val = line.partition("=")
        env[name] = val
    return env


def env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile; with `commented`, also `# KEY=value` ones."""
    pattern = r"^#\s*([A-Z][A-Z0-9_]*)=(.*)$" if commented else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(pattern, line) or re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def load_credentials(unit: Unit, store: Path, into: Path) -> None:
    """Do what systemd does for LoadCredential=ID:PATH: copy a file to `into`/ID, or every
    file of a directory to `into`/ID_FILENAME. `store` stands in for the root of PATH."""
    into.mkdir(parents=True, exist_ok=True)
    for spec in values(unit, "Service", "LoadCredential"):
        ident, _, path = spec.partition(":")
        source = store / path.lstrip("/")
        if source.is_dir():
            for item in sorted(source.rglob("*")):
                if item.is_file() and not item.is_symlink():
                    shutil.copyfile(item, into / f"{ident}_{item.name}")
        else:
            shutil.copyfile(source, into / ident)


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                yield path, document


@pytest.fixture(scope="module")
def bot() -> Unit:
    return parse_unit(BOT_UNIT)


@pytest.fixture(scope="module")
def cli() -> Unit:
    return parse_unit(CLI_UNIT)


@pytest.fixture(scope="module")
def ingest() -> Unit:
    return parse_unit(INGEST_UNIT)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    return monkeypatch


# ------------------------------------------------------------------------ systemd units
def test_bot_unit_runs_serve_from_the_venv_after_validating(bot: Unit) -> None:
    assert value(bot, "Service", "Type") == "exec"
    assert value(bot, "Service", "ExecStart") == "/opt/signal-rag/bin/signal-rag serve"
    assert value(bot, "Service", "ExecStartPre") == (
        "/opt/signal-rag/bin/python /opt/signal-rag/libexec/check_config.py --serve")
    assert value(bot, "Service", "User") == "signal-rag"
    assert value(bot, "Service", "EnvironmentFile") == "/etc/signal-rag/signal-rag.env"
    assert value(bot, "Service", "Restart") == "on-failure"
    # exit 2 is a configuration error (check_config.py and the CLI): no restart loop
    assert value(bot, "Service", "RestartPreventExitStatus") == "2"
    assert value(bot, "Service", "KillSignal") == "SIGTERM"
    # serve drains within 30 s (RES-3); systemd must wait longer before SIGKILL
    assert 30 < int(value(bot, "Service", "TimeoutStopSec")) <= 90
    assert value(bot, "Install", "WantedBy") == "multi-user.target"


def test_bot_unit_orders_itself_after_the_signal_cli_unit(bot: Unit) -> None:
    for key in ("After", "Wants"):
        assert "signal-cli.service" in " ".join(values(bot, "Unit", key)).split(), key
    # the bot reconnects on its own: a daemon restart must not stop it
    assert not values(bot, "Unit", "Requires") and not values(bot, "Unit", "BindsTo")


def test_bot_unit_data_dir_is_its_state_directory(bot: Unit) -> None:
    env = unit_environment(bot)
    state = value(bot, "Service", "StateDirectory")
    assert env["SIGNAL_RAG_DATA_DIR"] == f"%S/{state}"
    assert value(bot, "Service", "StateDirectoryMode") == "0700"
    # journald keeps the log; the rotating file would duplicate it inside the state dir
    assert env["SIGNAL_RAG_LOG__FILE_ENABLED"] == "false"
    # under ProtectSystem=strict the state and cache directories are the writable ones
    for key in ("ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem"):
        assert not values(bot, "Service", key), key
    assert env["XDG_CACHE_HOME"] == f"%C/{value(bot, 'Service', 'CacheDirectory')}"


def test_bot_unit_sandbox_still_lets_it_bind_and_connect(bot: Unit) -> None:
    service = dict(bot["Service"])
    for key, expected in SANDBOX.items():
        assert service.get(key) == expected, key
    families = set(value(bot, "Service", "RestrictAddressFamilies").split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= families, "bind 127.0.0.1:8787, reach models"
    for key in ("PrivateNetwork", "IPAddressDeny", "MemoryDenyWriteExecute"):
        # loopback to signal-cli and the health port; torch's oneDNN writes code (W+X)
        assert key not in service, f"{key} would break the bot"
    host, _, port = unit_environment(bot)["SIGNAL_RAG_HEALTH__ADDR"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 1024, "no capability needed, loopback only"
    assert "CAP_NET_BIND_SERVICE" not in service.get("AmbientCapabilities", "")
    assert service["MemoryMax"] and service["TasksMax"]


def test_bot_unit_secrets_come_from_systemd_credentials(
        bot: Unit, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """LoadCredential= of the credentials folder + SIGNAL_RAG_SECRETS_DIR=%d gives the
    settings loader a file per variable, in lower case; proven with the real loader."""
    env = unit_environment(bot)
    assert env["SIGNAL_RAG_SECRETS_DIR"] == "%d"
    [spec] = values(bot, "Service", "LoadCredential")
    assert spec == "signal_rag:/etc/signal-rag/credentials"
    store = tmp_path / "root"
    credentials = store / "etc" / "signal-rag" / "credentials"
    credentials.mkdir(parents=True)
    (credentials / "audit__pepper").write_text("p" * 64 + "\n")
    (credentials / "access__passphrase").write_text("a long private passphrase\n")
    (credentials / "llm__api_key").write_text("sk-from-a-credential\n")
    load_credentials(bot, store, tmp_path / "run-credentials")
    names = sorted(p.name for p in (tmp_path / "run-credentials").iterdir())
    assert [n.upper() for n in names] == sorted(
        n for n in SETTINGS if n in {n.upper() for n in names}), "each file names a setting"
    settings = load_settings(tmp_path / "run-credentials")
    assert settings.audit.pepper is not None
    assert settings.audit.pepper.get_secret_value() == "p" * 64
    assert settings.access.passphrase is not None
    assert settings.access.passphrase.get_secret_value() == "a long private passphrase"
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-from-a-credential"
    # no secret is ever put in the environment file or the unit
    for text in (BOT_UNIT.read_text(), ENV_EXAMPLE.read_text()):
        assert not re.search(r"^[^#]*(PEPPER|PASSPHRASE|API_KEY|WEBHOOK_URL|CANARY)=", text,
                             re.M)


def test_the_env_example_with_credentials_passes_the_serve_checks(
        bot: Unit, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    import check_config  # docker/check_config.py, on sys.path above

    for name, val in {**unit_environment(bot), **env_file(ENV_EXAMPLE)}.items():
        clean_env.setenv(name, val)
    clean_env.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    secrets = tmp_path / "credentials"
    secrets.mkdir()
    clean_env.setenv("SIGNAL_RAG_SECRETS_DIR", str(secrets))
    # without the credentials serve must refuse (pepper and passphrase are required)
    problems = check_config.problems(serve=True)
    assert problems and any("SIGNAL_RAG_" in p for p in problems), problems
    (secrets / "signal_rag_audit__pepper").write_text("p" * 64)
    (secrets / "signal_rag_access__passphrase").write_text("a long private passphrase")
    assert check_config.problems(serve=True) == []


def test_ingest_unit_shares_user_settings_secrets_and_sandbox(
        bot: Unit, ingest: Unit) -> None:
    for key in ("User", "Group", "EnvironmentFile", "LoadCredential", "StateDirectory",
                "CacheDirectory", "UMask"):
        assert values(ingest, "Service", key) == values(bot, "Service", key), key
    bot_env, ingest_env = unit_environment(bot), unit_environment(ingest)
    for name in ("SIGNAL_RAG_DATA_DIR", "SIGNAL_RAG_SECRETS_DIR", "HF_HUB_OFFLINE"):
        assert ingest_env[name] == bot_env[name], name
    service = dict(ingest["Service"])
    for key, expected in SANDBOX.items():
        assert service.get(key) == expected, key
    assert value(ingest, "Service", "Type") == "oneshot"
    start = value(ingest, "Service", "ExecStart").split()
    assert start[:2] == ["/opt/signal-rag/bin/signal-rag", "ingest"]
    assert start[-1] == "${SIGNAL_RAG_DOCUMENTS_DIR}" and "SIGNAL_RAG_DOCUMENTS_DIR" in ingest_env
    assert value(ingest, "Service", "SuccessExitStatus") == "1", "1 = some files skipped"
    assert value(ingest, "Service", "ExecStartPre").endswith("check_config.py")


def test_signal_cli_unit_runs_the_loopback_daemon_in_manual_mode(cli: Unit, bot: Unit) -> None:
    start = value(cli, "Service", "ExecStart").split()
    state = value(cli, "Service", "StateDirectory")
    assert start[0] == "/opt/signal-cli/bin/signal-cli"
    assert start[1:4] == ["--config", f"%S/{state}", "daemon"]
    assert start[4:] == ["--http", "127.0.0.1:8080", "--receive-mode=manual"]
    assert value(cli, "Service", "User") == "signal-cli" != value(bot, "Service", "User")
    assert value(cli, "Service", "StateDirectoryMode") == "0700"
    java_home = unit_environment(cli)["JAVA_HOME"]
    assert re.search(r"25", java_home), "signal-cli 0.13 needs Java 21+; we run 25"
    # measured: the JVM exits 143 on SIGTERM (tests/integration/test_deploy_units.py)
    assert value(cli, "Service", "SuccessExitStatus") == "143"
    assert value(cli, "Service", "Restart") == "on-failure"
    # the bot's default daemon URL and the example's point at this daemon
    assert env_file(ENV_EXAMPLE)["SIGNAL_RAG_SIGNAL__URL"] == "http://127.0.0.1:8080"
    assert Settings.model_fields["signal"].default.url == "http://127.0.0.1:8080"
    version = re.search(r"ARG SIGNAL_CLI_VERSION=(\S+)",
                        (ROOT / "docker" / "signal-cli" / "Dockerfile").read_text())
    assert version and f"signal-cli {version.group(1)}" in CLI_UNIT.read_text()
    service = dict(cli["Service"])
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                "PrivateDevices"):
        assert service[key] == SANDBOX[key], key
    assert "MemoryDenyWriteExecute" not in service, "the JIT needs W+X memory"
    assert "NoExecPaths" not in service, "libsignal loads its native library from /tmp"


def test_every_variable_in_the_units_and_env_example_exists() -> None:
    unit_only = {"SIGNAL_RAG_INGEST_OPTIONS"}  # defined and used by the ingest unit only
    known = SETTINGS | ENTRYPOINT_VARS | unit_only
    assert {"SIGNAL_RAG_SECRETS_DIR", "SIGNAL_RAG_DOCUMENTS_DIR"} <= ENTRYPOINT_VARS
    used = set()
    for path in (BOT_UNIT, INGEST_UNIT, CLI_UNIT, ENV_EXAMPLE):
        used |= set(re.findall(r"\bSIGNAL_RAG_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    used = {n for n in used if n != "SIGNAL_RAG_"}
    assert used and used <= known, f"not settings: {sorted(used - known)}"
    assert "SIGNAL_RAG_INGEST_OPTIONS" in value(parse_unit(INGEST_UNIT), "Service", "ExecStart")
    for name in env_file(ENV_EXAMPLE, commented=True):
        assert name in SETTINGS, name


def test_the_check_script_the_units_run_is_the_one_the_image_runs() -> None:
    """ExecStartPre runs a copy of docker/check_config.py; docs/deployment.md installs it."""
    guide = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "docker/check_config.py /opt/signal-rag/libexec/check_config.py" in guide
    assert (ROOT / "docker" / "check_config.py").is_file()
    for unit in (BOT_UNIT, INGEST_UNIT, CLI_UNIT):
        assert unit.name in guide, unit.name


def _stub_tree(tmp_path: Path, *units: Path) -> list[Path]:
    """Copies of the units whose /opt paths point at executable stubs under tmp_path
    (systemd-analyze checks that every Exec path is executable)."""
    copies = []
    for unit in units:
        text = unit.read_text(encoding="utf-8").replace("/opt/", f"{tmp_path}/opt/")
        for command in re.findall(rf"^Exec\w*=({re.escape(str(tmp_path))}/opt/\S+)", text,
                                  re.M):
            stub = Path(command)
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
        copy_path = tmp_path / unit.name
        copy_path.write_text(text, encoding="utf-8")
        copies.append(copy_path)
    return copies


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    return found


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    copies = _stub_tree(tmp_path, BOT_UNIT, INGEST_UNIT, CLI_UNIT)
    result = subprocess.run([analyze, "verify", *map(str, copies)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr)


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    [copy_path] = _stub_tree(tmp_path, BOT_UNIT)
    copy_path.write_text(copy_path.read_text().replace("ProtectHome=yes", "ProtectHomes=yes"))
    result = subprocess.run([analyze, "verify", str(copy_path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert "Unknown key" in result.stdout + result.stderr and "ProtectHomes" in result.stderr


@pytest.mark.parametrize("unit", [BOT_UNIT, INGEST_UNIT, CLI_UNIT], ids=lambda p: p.stem)
def test_units_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    [copy_path] = _stub_tree(tmp_path, unit)
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager",
                             str(copy_path)], capture_output=True, text=True, timeout=60,
                            check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


# ------------------------------------------------------------------ Kubernetes manifests
def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "signal-rag"
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.example.yaml"}, "a manifest is missing or stray"
    assert "secret.example.yaml" in present, "the Secret example documents the keys"


def test_manifests_match_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate not installed (pip install '.[dev]')")
    latest = kubernetes_validate.utils.latest_version()
    checked = 0
    for path, document in k8s_documents():
        if document.get("kind") == "Kustomization":
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(
                    document, latest if version == "latest" else version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} ({version}): {'.'.join(map(str, exc.path))}: "
                            f"{exc.message}")
        checked += 1
    assert checked >= 8


def test_the_schemas_reject_broken_manifests() -> None:
    """The validation above can fail: a wrong type and a misspelt field are caught."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate not installed (pip install '.[dev]')")
    statefulset = yaml.safe_load((KUBERNETES / "statefulset.yaml").read_text())
    broken = copy.deepcopy(statefulset)
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.29", strict=True)
    broken = copy.deepcopy(statefulset)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.29", strict=True)


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, document in k8s_documents():
        if document.get("kind") != "Kustomization":
            found[document["kind"]] = document
    return found


def _containers(manifests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = manifests["StatefulSet"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"] + pod.get("initContainers", [])}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_one_replica_and_signal_cli_as_a_native_sidecar(manifests) -> None:
    statefulset = manifests["StatefulSet"]
    assert statefulset["spec"]["replicas"] == 1
    pod = statefulset["spec"]["template"]["spec"]
    [sidecar] = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar: starts first, stops last"
    dockerfile = (ROOT / "docker" / "signal-cli" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/opt/signal-cli/bin/signal-cli", "--config", "/var/lib/signal-cli"]' \
        in dockerfile
    assert sidecar["args"] == ["daemon", "--http", "127.0.0.1:8080", "--receive-mode=manual"]
    [bot] = pod["containers"]
    assert "command" not in bot and "args" not in bot, "the image's entrypoint runs serve"
    assert _env(bot)["SIGNAL_RAG_SIGNAL__URL"] == "http://127.0.0.1:8080"
    # exactly one writer of the signal-cli data: one container of one pod mounts it
    mounts = [(c["name"], m["name"]) for c in _containers(manifests).values()
              for m in c.get("volumeMounts", [])]
    assert [c for c, m in mounts if m == "signal-cli-data"] == ["signal-cli"]
    assert "signal-cli-data" in {t["metadata"]["name"]
                                 for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert pod["terminationGracePeriodSeconds"] > 30, "serve drains within 30 s"


def test_probes_reach_the_health_server(manifests) -> None:
    bot = _containers(manifests)["bot"]
    addr = _env(bot)["SIGNAL_RAG_HEALTH__ADDR"]
    host, _, port = addr.rpartition(":")
    assert host == "0.0.0.0", "httpGet probes come from the kubelet, not the loopback"
    [health] = bot["ports"]
    assert health["containerPort"] == int(port) and health["name"] == "health"
    assert bot["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert bot["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert bot["startupProbe"]["httpGet"]["path"] == "/healthz"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile
    service = manifests["Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "health"
    assert manifests["StatefulSet"]["spec"]["serviceName"] == service["metadata"]["name"]


def test_security_context_matches_the_images(manifests) -> None:
    pod = manifests["StatefulSet"]["spec"]["template"]["spec"]
    bot_uid = re.findall(r"^USER (\d+):(\d+)", (ROOT / "docker" / "Dockerfile").read_text(),
                         re.M)[-1]
    cli_uid = re.findall(r"^USER (\d+):(\d+)",
                         (ROOT / "docker" / "signal-cli" / "Dockerfile").read_text(), re.M)[-1]
    context = pod["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == bot_uid
    assert str(context["fsGroup"]) == bot_uid[1] and context["runAsNonRoot"] is True
    # Always would re-add group read/write to signal-cli's 0600 keys on every start
    assert context["fsGroupChangePolicy"] == "OnRootMismatch"
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    sidecar = _containers(manifests)["signal-cli"]["securityContext"]
    assert (str(sidecar["runAsUser"]), str(sidecar["runAsGroup"])) == cli_uid
    assert pod["automountServiceAccountToken"] is False
    for name, container in _containers(manifests).items():
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert container["resources"]["limits"]["memory"], name
        assert container["resources"]["requests"]["memory"], name
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert "/tmp" in writable, f"{name}: a read-only root needs a writable /tmp"
    bot = _containers(manifests)["bot"]
    writable = {m["mountPath"] for m in bot["volumeMounts"] if not m.get("readOnly")}
    assert _env(bot)["SIGNAL_RAG_DATA_DIR"] in writable
    assert "SIGNAL_RAG_DATA_DIR=/data" in (ROOT / "docker" / "Dockerfile").read_text()
    assert "/var/lib/signal-cli" in {m["mountPath"] for m in
                                     _containers(manifests)["signal-cli"]["volumeMounts"]}


def test_secret_config_and_volume_references_resolve(manifests) -> None:
    pod = manifests["StatefulSet"]["spec"]["template"]["spec"]
    bot = _containers(manifests)["bot"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {t["metadata"]["name"] for t in manifests["StatefulSet"]["spec"]
              ["volumeClaimTemplates"]}
    for container in _containers(manifests).values():
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes or mount["name"] in claims, mount
    secret_mount = next(m for m in bot["volumeMounts"] if m["name"] == "secrets")
    assert secret_mount["mountPath"] == _env(bot)["SIGNAL_RAG_SECRETS_DIR"]
    assert secret_mount["readOnly"] is True
    secret = manifests["Secret"]
    assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes["secrets"]["secret"]["defaultMode"] & 0o040, "fsGroup must read it"
    for key, val in secret["stringData"].items():
        assert key.upper() in SETTINGS and key == key.lower(), key
        assert val.startswith("REPLACE"), "no real value in the example"
    assert {"signal_rag_audit__pepper", "signal_rag_access__passphrase"} <= set(
        secret["stringData"])
    [source] = bot["envFrom"]
    assert source["configMapRef"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert volumes["documents"]["persistentVolumeClaim"]["claimName"] == \
        manifests["PersistentVolumeClaim"]["metadata"]["name"]
    assert manifests["ServiceAccount"]["metadata"]["name"] == pod["serviceAccountName"]
    assert manifests["ServiceAccount"]["automountServiceAccountToken"] is False


def test_every_variable_in_the_manifests_exists(manifests) -> None:
    known = SETTINGS | ENTRYPOINT_VARS
    used = set(manifests["ConfigMap"]["data"])
    used |= set(re.findall(r"^\s*#\s*(SIGNAL_RAG_[A-Z0-9_]+):",
                           (KUBERNETES / "configmap.yaml").read_text(), re.M))
    for container in _containers(manifests).values():
        used |= set(_env(container))
    ours = {n for n in used if n.startswith("SIGNAL_RAG_")}
    assert ours and ours <= known, f"not settings: {sorted(ours - known)}"
    assert used - ours <= {"JAVA_OPTS", "XDG_CACHE_HOME"}, used - ours


def test_labels_selectors_and_network_policy(manifests) -> None:
    labels = manifests["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    selector = manifests["StatefulSet"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert manifests["Service"]["spec"]["selector"].items() <= labels.items()
    policy = manifests["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": "health", "protocol": "TCP"}]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"]
                    for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    https = next(r for r in policy["egress"] if r["ports"] == [{"port": 443, "protocol": "TCP"}])
    [block] = https["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "169.254.0.0/16"} <= set(block["ipBlock"]["except"])
    namespace = manifests["Namespace"]["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_images_are_the_ones_the_dockerfiles_build(manifests) -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    images = {i["name"]: i for i in kustomization["images"]}
    containers = _containers(manifests)
    assert containers["bot"]["image"] in images and containers["signal-cli"]["image"] in images
    assert images["signal-rag"]["newTag"] in {"api", "local"}  # docker/Dockerfile targets
    version = re.search(r"ARG SIGNAL_CLI_VERSION=(\S+)",
                        (ROOT / "docker" / "signal-cli" / "Dockerfile").read_text())
    assert version and images["signal-rag/signal-cli"]["newTag"] == version.group(1)
    if images["signal-rag"]["newTag"] == "local":
        assert manifests["ConfigMap"]["data"]["SIGNAL_RAG_EMBEDDINGS__PROVIDER"] == "local"
