"""A Docker engine and the two images built from this checkout, for the container tests.

The engine comes from scripts/container-engine.sh (Debian's docker.io on a private socket,
stand-in base images built locally; docs/docker.md, "Tested here"). They run only when asked
(SIGNAL_RAG_CONTAINER_TESTS=1, which `make container-test` sets, and `make test` under CI:
installing and starting an engine is not something a plain `pytest` should do to a
workstation), then fail when the engine cannot start, and skip with the reason otherwise.
Fixtures are package-scoped: the engine this run started is stopped as soon as the last
container test is done, before `make test` goes on to the rest of the suite. Images are
built once per run with `nice` (the engine's build cache makes a warm build a cache hit).
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "scripts" / "container-engine.sh"
BOT_IMAGE = "signal-rag:latest"
SIGNAL_CLI_VERSION = "0.13.19"
TORCH_VERSION = "2.13.0"
WHEEL_PORT = 47613
SIGNAL_CLI_IMAGE = f"signal-rag/signal-cli:{SIGNAL_CLI_VERSION}"
ASKED = os.environ.get("SIGNAL_RAG_CONTAINER_TESTS", "") == "1"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


@dataclass
class Engine:
    """Debian's docker and docker-compose clients pointed at the engine."""

    docker: str
    compose: str
    env: dict[str, str]
    started: bool
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.docker, *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False, input=input_text)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {shlex.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return result

    def run_compose(self, directory: Path, project: str, *args: str, check: bool = True,
                    timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [self.compose, "--project-directory", str(directory), "-p", project,
                   "-f", str(directory / "docker-compose.yml"), *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False, cwd=directory)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {shlex.join(args)} exited "
                                 f"{result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def build(self, name: str, dockerfile: str, context: Path, *extra: str) -> None:
        """A BuildKit build with the host network (PyPI, npm and Debian through it)."""
        started = time.monotonic()
        env = {**self.env, "DOCKER_BUILDKIT": "1"}
        command = ["nice", "-n", "10", self.docker, "build", "--network", "host", "--progress",
                   "plain", "-f", dockerfile, "-t", name, *extra, str(context)]
        result = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=1500, check=False)
        self.timings[name] = time.monotonic() - started
        if result.returncode != 0:
            raise AssertionError(f"building {name} failed:\n{result.stderr[-6000:]}")

    def image_size(self, name: str) -> int:
        return int(self.run("image", "inspect", name, "--format", "{{.Size}}").stdout)


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def _unavailable(reason: str) -> None:
    if ASKED:
        pytest.fail(f"container engine unavailable when asked for: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="package")
def engine() -> Iterator[Engine]:
    if not ASKED:
        pytest.skip("container tests need an engine: run them with make container-test "
                    "(SIGNAL_RAG_CONTAINER_TESTS=1; scripts/container-engine.sh starts one)")
    try:
        up = subprocess.run(["bash", str(ENGINE_SCRIPT), "up"], capture_output=True,
                            text=True, timeout=1200, check=False)
        if up.returncode != 0:
            raise RuntimeError("failed: " + (up.stderr.strip().splitlines() or ["no output"])[-1])
        values = _read_env_file(Path(up.stdout.strip()))
    except (OSError, ValueError, subprocess.TimeoutExpired, RuntimeError) as exc:
        # A daemon started before the failure (a stand-in build that broke) is stopped:
        # `down` stops only the one the script marked as its own.
        subprocess.run(["bash", str(ENGINE_SCRIPT), "down"], timeout=120, check=False,
                       capture_output=True)
        _unavailable(f"scripts/container-engine.sh up: {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_HOST"] = values["DOCKER_HOST"]
    found = Engine(values["DOCKER"], values["DOCKER_COMPOSE"], env,
                   values["ENGINE_STARTED"] == "1")
    yield found
    if found.started:
        subprocess.run(["bash", str(ENGINE_SCRIPT), "down"], timeout=120, check=False)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture(scope="package")
def torch_wheels() -> Iterator[str]:
    """A loopback URL listing the CPU torch wheel, for the image's build stage.

    PyPI's torch is the multi-GB CUDA build and the CPU index the Dockerfile uses by
    default may be unreachable (it is on the CI machine), so the wheel comes from this
    machine's own pip configuration (`pip download`, cached next to the engine's data
    root) and is served on 127.0.0.1 to the build, which runs with the host network.
    """
    cache = Path(os.environ.get("SIGNAL_RAG_CACHE", Path.home() / ".cache" / "signal-rag"))
    wheels = cache / "torch-wheels"
    if not list(wheels.glob(f"torch-{TORCH_VERSION}+cpu-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", str(wheels), f"torch=={TORCH_VERSION}+cpu"],
                       check=True, timeout=1200)
    handler = functools.partial(QuietHandler, directory=str(wheels))
    try:  # the URL is a build arg, part of the build cache key: keep it the same
        server = ThreadingHTTPServer(("127.0.0.1", WHEEL_PORT), handler)
    except OSError:  # taken (another run): a cold build of the export stage, still correct
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="package")
def bot_image(engine: Engine, torch_wheels: str) -> str:
    engine.build(BOT_IMAGE, "docker/Dockerfile", ROOT, "--build-arg",
                 f"TORCH_FIND_LINKS={torch_wheels}")
    return BOT_IMAGE


@pytest.fixture(scope="package")
def signal_cli_image(engine: Engine) -> str:
    engine.build(SIGNAL_CLI_IMAGE, "docker/signal-cli/Dockerfile", ROOT / "docker" / "signal-cli")
    return SIGNAL_CLI_IMAGE


@pytest.fixture
def volume(engine: Engine) -> Iterator[Callable[[], str]]:
    """Named volumes, removed after the test."""
    made: list[str] = []

    def make() -> str:
        name = engine.run("volume", "create").stdout.strip()
        made.append(name)
        return name

    yield make
    for name in made:
        engine.run("volume", "rm", "-f", name, check=False)


def docker_run_args(*, read_only: bool = True, network: str = "none") -> Sequence[str]:
    """How the tests run the bot: as compose does (docker-compose.yml `x-hardening`)."""
    args = ["run", "--rm", "--network", network, "--security-opt", "no-new-privileges:true",
            "--cap-drop", "ALL"]
    if read_only:
        args += ["--read-only", "--tmpfs", "/tmp"]
    return args
