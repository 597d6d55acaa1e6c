"""docker-compose.yml brought up for real (Debian's Compose 1.29): the bot with the real
signal-cli daemon image (no account linked: Signal is unreachable here), both healthy,
/readyz through the port published on 127.0.0.1, and a clean drain on `down`.

The project runs from a temporary folder holding a copy of docker-compose.yml, a `.env`
made from .env.example and generated secret files, so nothing is written to the checkout.
Its network is Compose's own bridge on an engine without NAT (scripts/container-engine.sh:
no iptables, no masquerading), so the containers reach each other and loopback only.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.container.conftest import ROOT, Engine, wait_until

EXAMPLES = ROOT / "examples" / "knowledge"


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

    def compose(self, *args: str, check: bool = True, timeout: float = 300):
        return self.engine.run_compose(self.directory, self.name, *args, check=check,
                                       timeout=timeout)

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.name}_{service}_{index}"

    def state(self, service: str, index: int = 1) -> dict:
        result = self.engine.run("inspect", self.container(service, index), "--format",
                                 "{{json .State}}")
        state: dict = json.loads(result.stdout)
        return state

    def health(self, service: str, index: int = 1) -> str:
        return str(self.state(service, index).get("Health", {}).get("Status", "none"))


def write_env(path: Path, values: dict[str, str]) -> None:
    """.env.example with `values` replacing or adding lines; commented-out settings stay
    commented out, and a value of None comments a line out."""
    lines = []
    seen = set()
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


@pytest.fixture
def project(engine: Engine, bot_image: str, signal_cli_image: str,
            tmp_path: Path) -> Iterator[Project]:
    directory = tmp_path / "project"
    directory.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", directory / "docker-compose.yml")
    for folder in ("docker", "docs", "examples"):
        (directory / folder).symlink_to(ROOT / folder)
    secret_dir = directory / "secrets"
    secret_dir.mkdir()
    # Compose bind-mounts secret files as they are: the bot (uid 10001) must be able to
    # read them, which the default umask's 0644 allows.
    (secret_dir / "audit_pepper").write_text(secrets.token_hex(32))
    (secret_dir / "access_passphrase").write_text("a long private passphrase for tests")
    (secret_dir / "llm_api_key").write_text("none")
    for path in secret_dir.iterdir():
        path.chmod(0o644)
    name = f"srtest{secrets.token_hex(4)}"
    port = free_port()
    write_env(directory / ".env", {
        "COMPOSE_PROJECT_NAME": name,
        "SIGNAL_RAG_HEALTH_PORT": str(port),
        "SIGNAL_RAG_DOCUMENTS": str(EXAMPLES),
        # offline: the image's own embedder, the extractive answerer (no model server)
        "SIGNAL_RAG_LLM__MODEL": None,
        "SIGNAL_RAG_EMBEDDINGS__MODEL": None,
    })
    found = Project(engine, directory, name, port)
    try:
        yield found
    finally:
        found.compose("down", "--volumes", "--timeout", "60", check=False, timeout=180)


def test_compose_up_healthy_ready_on_loopback_and_drains_on_down(project: Project) -> None:
    project.compose("up", "-d", "--no-build", "bot", "signal-cli", timeout=600)
    wait_until(lambda: project.health("signal-cli") == "healthy", 240, "signal-cli healthy")
    wait_until(lambda: project.health("bot") == "healthy", 400, "bot healthy")

    response = httpx.get(f"http://127.0.0.1:{project.port}/readyz", timeout=10,
                         trust_env=False)
    assert response.status_code == 200, response.text
    checks = response.json()
    assert checks["signal_cli"]["ok"] and checks["index"]["ok"], checks
    # published on loopback only
    ports = project.engine.run("port", project.container("bot")).stdout
    assert ports.strip() == f"8787/tcp -> 127.0.0.1:{project.port}", ports

    stop = project.compose("stop", "--timeout", "40", "bot", timeout=120)
    assert stop.returncode == 0
    state = project.state("bot")
    assert state["ExitCode"] == 0, state
    logs = project.engine.run("logs", project.container("bot")).stdout
    assert '"serve_stopped"' in logs or "serve_stopped" in logs, logs[-3000:]
    down = project.compose("down", "--volumes", "--timeout", "60", timeout=180)
    assert down.returncode == 0
    assert project.engine.run("ps", "-a", "--filter", f"name={project.name}",
                              "--format", "{{.Names}}").stdout.strip() == ""
