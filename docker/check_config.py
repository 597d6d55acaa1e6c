"""Validate signal-rag's configuration the way the CLI does, one problem per line.

    python check_config.py [--serve]

Exit 0 when valid; otherwise each problem on its own stderr line (`config error: ...`,
naming the variable to fix) and exit 2, the CLI's configuration exit code. `--serve` adds
the checks `signal-rag serve` makes before opening anything (passphrase or allow list,
audit pepper). Run by docker/entrypoint.sh before the command starts; it reads the same
environment and secrets directory (SIGNAL_RAG_SECRETS_DIR, default /run/secrets).
"""

from __future__ import annotations

import sys

EXIT_CONFIG = 2
PREFIX = "invalid configuration: "


def problems(serve: bool) -> list[str]:
    from agent.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        message = str(exc)
        if message.startswith(PREFIX):  # load_settings joins pydantic's errors with "; "
            return [part for part in message.removeprefix(PREFIX).split("; ") if part]
        return [message]
    if serve:
        from agent.serve import access_policy

        try:
            access_policy(settings)
        except ConfigError as exc:
            return [str(exc)]
    return []


def main(argv: list[str]) -> int:
    unknown = [arg for arg in argv if arg != "--serve"]
    if unknown:
        print(f"usage: check_config.py [--serve] (got {' '.join(unknown)})", file=sys.stderr)
        return EXIT_CONFIG
    found = problems(serve="--serve" in argv)
    for problem in found:
        print(f"config error: {problem}", file=sys.stderr)
    return EXIT_CONFIG if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
