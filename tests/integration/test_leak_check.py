"""The session-wide leak check fails a run that logs a sensitive test value."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("body", "code"), [
    ('logging.getLogger("x").warning("checked", extra={"detail": "open sesame 42"})', 1),
    ('logging.getLogger("x").warning("checked", extra={"text": "open sesame 42"})', 0),
    ('logging.getLogger("x").warning("checked", extra={"who": "+15550001001"})', 0),
])
def test_a_leaked_value_fails_the_run_and_a_redacted_one_does_not(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, body: str,
        code: int) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(f"import logging\n\ndef test_logs():\n    {body}\n")
    result = pytester.runpytest_subprocess("-p", "tests.leak_check", "-p", "no:cacheprovider")
    assert result.ret == code
    result.stdout.fnmatch_lines([f"leak check: * {code} leaks"])
