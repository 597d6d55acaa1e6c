"""docker-compose.yml brought up for real with Debian's Compose 1.29.

- The bot with the real signal-cli image (no account linked: Signal is unreachable here):
  both healthy, /readyz through the port published on 127.0.0.1, a clean drain on stop.
- The `redis` profile: two bots share one rate limit through the Redis container.
- The `observability` profile: the trace of one answered question reaches the collector.

A question can only arrive through a daemon that delivers messages, so the last two run
the daemon simulator (agent/testing/signal_daemon.py) as the `signal-cli` service, and the
collector (an image that cannot be pulled here) is the OTLP receiver of agent/testing; both
run from the bot image (tests/container/fake_services.py). Everything else is the real
compose file, run from a temporary folder with a `.env` made from .env.example and
generated secrets, so nothing is written to the checkout. The network is Compose's own
bridge on an engine without NAT (scripts/container-engine.sh: no iptables, no
masquerading): the containers reach each other and loopback only.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.testing.signal_daemon import BOT_NUMBER
from tests.container.conftest import ROOT, Engine, wait_until

pytestmark = pytest.mark.container

EXAMPLES = ROOT / "examples" / "knowledge"
PASSPHRASE = "a long private passphrase for tests"
QUESTION = "What are the default chunk size and overlap?"
FACT = "200 characters"
SLOW_DOWN = "You are sending messages too fast"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Project:
    engine: Engine
    directory: Path
    name: str
    port: int
    controls: dict[str, Path] = field(default_factory=dict)

    def compose(self, *args: str, check: bool = True, timeout: float = 300):
        return self.engine.run_compose(self.directory, self.name, *args, check=check,
                                       timeout=timeout)

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def state(self, service: str) -> dict[str, Any]:
        result = self.engine.run("inspect", self.container(service), "--format",
                                 "{{json .State}}")
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def health(self, service: str) -> str:
        return str(self.state(service).get("Health", {}).get("Status", "none"))

    def logs(self, service: str) -> str:
        result = self.engine.run("logs", self.container(service))
        return result.stdout + result.stderr

    def events(self, service: str, kind: str) -> list[dict[str, Any]]:
        """JSON lines of a fake service (fake_services.py) with this `event`."""
        found = []
        for line in self.engine.run("logs", self.container(service)).stdout.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == kind:
                    found.append(record)
        return found

    def deliver(self, service: str, text: str) -> None:
        """The simulator behind `service` delivers `text` from Alice."""
        control = self.controls[service]
        number = len(list(control.iterdir()))
        path = control / f"{number:03d}.txt"
        temporary = control / f".{number:03d}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o644)
        temporary.rename(path)  # appears whole

    def replies(self, service: str) -> list[str]:
        return [str(event["message"]) for event in self.events(service, "send")]


def write_env(path: Path, values: dict[str, str | None]) -> None:
    """.env.example with `values` replacing or adding lines (None comments a line out)."""
    lines, seen = [], set()
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if match and match[1] in values:
            seen.add(match[1])
            value = values[match[1]]
            lines.append(f"{match[1]}={value}" if value is not None else f"# {line}")
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in values.items() if k not in seen and v is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def fake_service(compose: dict[str, Any], service: str, role: str,
                 control: Path | None = None) -> None:
    """Run tests/container/fake_services.py `role` as `service`, from the bot image."""
    spec = compose["services"][service]
    spec.pop("build", None)
    spec.pop("command", None)
    if role == "signal-daemon":
        spec.pop("profiles", None)
    spec["image"] = compose["services"]["bot"]["image"]
    spec["entrypoint"] = ["python", "-m", "tests.container.fake_services", role]
    if control is not None:
        spec["entrypoint"].append("/control")
    spec["user"] = "10001:10001"
    spec["read_only"] = True
    spec["environment"] = {"PYTHONPATH": "/srv", "PYTHONDONTWRITEBYTECODE": "1"}
    spec["volumes"] = [f"{ROOT / 'tests'}:/srv/tests:ro"]
    if control is not None:
        spec["volumes"].append(f"{control}:/control:ro")
    spec.pop("depends_on", None)


@pytest.fixture
def make_project(engine: Engine, bot_image: str, signal_cli_image: str,
                 tmp_path: Path) -> Iterator[Callable[..., Project]]:
    made: list[Project] = []

    def make(env: dict[str, str | None] | None = None,
             change: Callable[[dict[str, Any], Project], None] | None = None) -> Project:
        directory = tmp_path / f"project{len(made)}"
        directory.mkdir()
        for folder in ("docker", "docs"):
            (directory / folder).symlink_to(ROOT / folder)
        secret_dir = directory / "secrets"
        secret_dir.mkdir()
        # Compose bind-mounts secret files as they are: the bot (uid 10001) reads them.
        (secret_dir / "audit_pepper").write_text(secrets.token_hex(32))
        (secret_dir / "access_passphrase").write_text(PASSPHRASE)
        (secret_dir / "llm_api_key").write_text("none")
        for path in secret_dir.iterdir():
            path.chmod(0o644)
        project = Project(engine, directory, f"srtest{secrets.token_hex(4)}", free_port())
        write_env(directory / ".env", {
            "COMPOSE_PROJECT_NAME": project.name,
            "SIGNAL_RAG_HEALTH_PORT": str(project.port),
            "SIGNAL_RAG_DOCUMENTS": str(EXAMPLES),
            # offline: the image's own embedder and the extractive answerer
            "SIGNAL_RAG_LLM__MODEL": None,
            "SIGNAL_RAG_EMBEDDINGS__MODEL": None,
            **(env or {}),
        })
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
        if change is not None:
            change(compose, project)
        (directory / "docker-compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
        made.append(project)
        return project

    yield make
    for project in made:
        project.compose("down", "--volumes", "--timeout", "60", check=False, timeout=180)


def test_compose_up_healthy_ready_on_loopback_and_drains_on_stop(make_project) -> None:
    project = make_project()
    project.compose("up", "-d", "--no-build", "bot", "signal-cli", timeout=600)
    wait_until(lambda: project.health("signal-cli") == "healthy", 240, "signal-cli healthy")
    wait_until(lambda: project.health("bot") == "healthy", 400, "bot healthy")

    response = httpx.get(f"http://127.0.0.1:{project.port}/readyz", timeout=10,
                         trust_env=False)
    assert response.status_code == 200, response.text
    ports = project.engine.run("port", project.container("bot")).stdout
    assert ports.strip() == f"8787/tcp -> 127.0.0.1:{project.port}", ports

    project.compose("stop", "--timeout", "40", "bot", timeout=120)
    state = project.state("bot")
    assert state["ExitCode"] == 0, state
    assert "serve_stopped" in project.logs("bot")
    down = project.compose("down", "--volumes", "--timeout", "60", timeout=180)
    assert down.returncode == 0
    left = project.engine.run("ps", "-a", "--filter", f"name={project.name}",
                              "--format", "{{.Names}}").stdout
    assert left.strip() == ""


def activate_and_ask(project: Project, daemon: str) -> None:
    wait_until(lambda: project.events(daemon, "listening"), 120, f"{daemon} listening")
    project.deliver(daemon, PASSPHRASE)
    wait_until(lambda: len(project.replies(daemon)) >= 1, 300, "activation reply")
    project.deliver(daemon, QUESTION)
    wait_until(lambda: len(project.replies(daemon)) >= 2, 120, "reply to the question")


def test_observability_profile_the_trace_of_an_answer_reaches_the_collector(
        make_project, tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.mkdir(mode=0o755)

    def change(compose: dict[str, Any], project: Project) -> None:
        fake_service(compose, "signal-cli", "signal-daemon", control)
        fake_service(compose, "otel-collector", "otlp-receiver")
        project.controls["signal-cli"] = control

    project = make_project({"OTEL_TRACES_EXPORTER": "otlp",
                            "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER}, change)
    project.compose("--profile", "observability", "up", "-d", "--no-build", "otel-collector",
                    timeout=300)
    project.compose("up", "-d", "--no-build", "bot", timeout=600)
    activate_and_ask(project, "signal-cli")
    assert FACT in project.replies("signal-cli")[1]

    def answer_trace() -> set[str]:
        spans = project.events("otel-collector", "span")
        traces: dict[str, set[str]] = {}
        for span in spans:
            if span["service"] == "signal-rag":
                traces.setdefault(span["trace_id"], set()).add(span["name"])
        # the question's trace, not the passphrase's: it has the graph's steps in it
        return next((names for names in traces.values()
                     if {"signal receive", "bot handle", "signal send"} <= names
                     and any(name.startswith("node ") for name in names)), set())

    wait_until(lambda: bool(answer_trace()), 120, "the answer's trace at the collector")
    assert {"node generate", "node output_guard", "node audit"} <= answer_trace()
    spans = project.events("otel-collector", "span")
    assert not any(QUESTION.lower() in json.dumps(span).lower() for span in spans)


def test_redis_profile_two_bots_share_one_limit(make_project, tmp_path: Path) -> None:
    controls = {"signal-cli": tmp_path / "control-a", "signal-cli-b": tmp_path / "control-b"}
    for path in controls.values():
        path.mkdir(mode=0o755)

    def change(compose: dict[str, Any], project: Project) -> None:
        services = compose["services"]
        services["signal-cli-b"] = copy.deepcopy(services["signal-cli"])
        fake_service(compose, "signal-cli", "signal-daemon", controls["signal-cli"])
        fake_service(compose, "signal-cli-b", "signal-daemon", controls["signal-cli-b"])
        second = copy.deepcopy(services["bot"])
        second.pop("ports")
        second["depends_on"] = {"signal-cli-b": {"condition": "service_healthy"}}
        second["environment"]["SIGNAL_RAG_SIGNAL__URL"] = "http://signal-cli-b:8080"
        second["volumes"] = [v.replace("bot-state:", "bot-b-state:")
                             .replace("bot-index:", "bot-b-index:") for v in second["volumes"]]
        services["bot-b"] = second
        compose["volumes"].update({"bot-b-state": None, "bot-b-index": None})
        project.controls.update(controls)

    project = make_project({"SIGNAL_RAG_LIMITS__STORAGE_URL": "redis://redis:6379",
                            "SIGNAL_RAG_LIMITS__RATES": "1/minute",
                            "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER}, change)
    project.compose("--profile", "redis", "up", "-d", "--no-build", "redis", timeout=300)
    wait_until(lambda: project.health("redis") == "healthy", 120, "redis healthy")
    project.compose("up", "-d", "--no-build", "bot", "bot-b", timeout=600)

    activate_and_ask(project, "signal-cli")  # Alice's one question a minute, on bot A
    assert FACT in project.replies("signal-cli")[1]
    activate_and_ask(project, "signal-cli-b")  # ... is used up on bot B too
    assert project.replies("signal-cli-b")[1].startswith(SLOW_DOWN), project.replies(
        "signal-cli-b")
    keys = project.engine.run("exec", project.container("redis"), "redis-cli", "--scan").stdout
    assert keys.strip(), "the limits live in Redis"
