"""SEC-5: ONNX Runtime's own telemetry stays off. Since 1.29 its wheels keep a device id
and an event queue under ~/.cache/Microsoft/DeveloperTools/.onnxruntime from the first
`import onnxruntime` on, and upload the events to Microsoft with their own HTTP client;
`knowledge.embeddings.import_onnxruntime` switches that off before the import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# ONNX Runtime keeps quiet on its own in these CI systems (and in its unit tests): the
# child must not look like one of them, or the test would pass without the switch.
CI_MARKERS = ("TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
              "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR",
              "BITBUCKET_BUILD_NUMBER", "ORT_RUNNING_UNIT_TESTS", "ORT_DISABLE_TELEMETRY")


@pytest.mark.parametrize("module", ["knowledge.embeddings", "guards.encoder"])
def test_loading_onnxruntime_leaves_no_device_id_and_no_event_queue(tmp_path: Path,
                                                                     module: str):
    """Both places that import the runtime (the embedder and the injection encoder, which may
    be the first in a process whose embeddings come from an endpoint) switch it off."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CI_MARKERS}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(ROOT))
    code = (f"from {module} import import_onnxruntime\n"
            "ort = import_onnxruntime()\n"
            "ort.SessionOptions()\n"
            "import os; print(os.environ['ORT_DISABLE_TELEMETRY'])\n")
    command = [sys.executable, "-c", code]
    # As root, in a network namespace of its own: were the switch ever lost, the runtime's
    # upload could not leave this machine from the test.
    if _can_unshare_network():
        command = ["unshare", "--net", *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1"
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []


def _can_unshare_network() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30,
                           check=False)
    return probe.returncode == 0
