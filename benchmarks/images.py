"""`make bench`, images: the uncompressed size the engine reports for each image.

    python -m benchmarks.images

Sizes come from `docker image inspect` (.Size) on the engine of scripts/container-engine.sh
(or DOCKER_HOST), for images already built (the container tests build them: `make
container-test`). Each is printed next to its base image, measured in the same run, so the
part this project adds is visible apart from the base; the bot image is checked against its
target (tests/container/test_images.py fails above it too). A missing engine or image is
reported and skipped, not an error: benchmarks never install or start anything.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOST = "unix:///run/signal-rag-engine/docker.sock"  # scripts/container-engine.sh
# (image, its base, size target in bytes or None)
IMAGES = [
    ("signal-rag:latest", "python:3.11-slim-bookworm", 400_000_000),
    ("signal-rag/signal-cli:0.13.19", "debian:bookworm-slim", None),
]


def _engine() -> tuple[str, dict[str, str]]:
    env = dict(os.environ)
    cache = Path(env.get("SIGNAL_RAG_CACHE", Path.home() / ".cache" / "signal-rag"))
    values: dict[str, str] = {}
    env_file = cache / "engine.env"
    if env_file.is_file():
        for line in env_file.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key] = shlex.split(value)[0] if value else ""
    env.setdefault("DOCKER_HOST", values.get("DOCKER_HOST", DEFAULT_HOST))
    return values.get("DOCKER", "/usr/bin/docker"), env


def size_of(docker: str, env: dict[str, str], image: str) -> int | None:
    try:
        result = subprocess.run([docker, "image", "inspect", image, "--format", "{{.Size}}"],
                                env=env, capture_output=True, text=True, timeout=30,
                                check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return int(result.stdout) if result.returncode == 0 else None


def main() -> int:
    docker, env = _engine()
    print(f"## Image sizes (docker image inspect, engine {env['DOCKER_HOST']})\n")
    print("| image | MB | base | base MB | added MB | target MB |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    over = []
    for image, base, target in IMAGES:
        size, base_size = size_of(docker, env, image), size_of(docker, env, base)
        if size is None:
            print(f"| {image} | not built or no engine | {base} | | | |")
            continue
        added = f"{(size - base_size) / 1e6:.0f}" if base_size is not None else "?"
        based = f"{base_size / 1e6:.0f}" if base_size is not None else "?"
        limit = f"{target / 1e6:.0f}" if target else "-"
        print(f"| {image} | {size / 1e6:.0f} | {base} | {based} | {added} | {limit} |")
        if target and size > target:
            over.append(image)
    if over:
        print(f"\nover target: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
