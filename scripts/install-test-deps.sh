#!/usr/bin/env bash
# Install the system packages the integration tests need on a fresh Debian/Ubuntu machine.
#
# Usage: scripts/install-test-deps.sh
#
# Today that is Debian's redis-server (tests/integration/test_ratelimit_redis.py starts
# its own server on a free loopback port; the package's system service is not used).
#
# Idempotent: does nothing, and touches no network, when `redis-server` is already on
# PATH. Runs apt-get as root directly, or through sudo when not root. Under CI the Redis
# tests fail instead of skipping when the binary is missing, so run this first there.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server already installed: $(command -v redis-server)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install redis-server with your package manager" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "not root and sudo is not available: cannot install redis-server" >&2
    exit 1
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends redis-server

command -v redis-server >/dev/null 2>&1 || {
    echo "redis-server still not on PATH after installing the package" >&2
    exit 1
}
echo "installed redis-server: $(command -v redis-server)" >&2
