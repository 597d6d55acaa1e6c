#!/usr/bin/env bash
# A Docker engine for the container tests (tests/container/), on a Debian machine without
# a reachable image registry. docs/docker.md, "Tested here", says how the result differs
# from a normal Docker host.
#
# Usage: scripts/container-engine.sh up|down|status
#   up      install Debian's docker.io, docker-compose and debootstrap when missing; start
#           a private dockerd when no engine answers; build the stand-in base images that
#           are missing; print the path of an env file (DOCKER, DOCKER_COMPOSE, DOCKER_HOST,
#           ENGINE_STARTED) on stdout. Progress goes to stderr.
#   down    stop the dockerd that `up` started (nothing else); its data root stays.
#   status  exit 0 when the engine `up` would use answers.
#
#   SIGNAL_RAG_CACHE  cache directory (default $HOME/.cache/signal-rag); the engine's data
#                     root lives in $SIGNAL_RAG_CACHE/engine, so images, build cache and pip
#                     downloads survive between runs on the same machine (a warm run builds
#                     nothing). Delete that folder (engine stopped) for a cold start.
#   DOCKER_HOST       an engine to use instead (then nothing is installed or started).
#
# Choices, and why:
# - Debian's client (/usr/bin/docker): a newer `docker` without buildx may come first on
#   PATH and refuses BuildKit builds; Debian's 20.10 client drives the engine's built-in
#   BuildKit. Compose is Debian's docker-compose 1.29 (v1, `docker-compose`).
# - dockerd --iptables=false --ip-masq=false --bridge=none: works without iptables;
#   containers get `--network none` or a user-defined network (Compose) with no NAT to the
#   outside, and published ports go through docker-proxy on 127.0.0.1. Storage: overlay2
#   when the kernel mounts overlayfs there (probed), else vfs (SIGNAL_RAG_ENGINE_STORAGE
#   forces one).
# - A private socket ($RUN_DIR/docker.sock) rather than /var/run/docker.sock: nothing else
#   on the machine is touched, and `down` can stop exactly the daemon it started.
# - Stand-in bases: no registry is reachable, so `debootstrap --variant=minbase bookworm`
#   is imported as debian:bookworm-slim; python:3.11-slim-bookworm (docker/standin/
#   Dockerfile) and redis:7.4-alpine (docker/standin/redis.Dockerfile, Debian's
#   redis-server, for the compose `redis` profile) are built on it, under the names the
#   production Dockerfiles and docker-compose.yml use. The
#   stand-in carries this machine's CA bundle (package downloads in a build go through an
#   intercepting egress proxy here); the production Dockerfiles never do. A real image of
#   the same name (a Docker host that can pull) is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
CACHE="${SIGNAL_RAG_CACHE:-$HOME/.cache/signal-rag}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd -P)"
DATA_ROOT="$CACHE/engine"
# Unix socket paths are limited to 108 bytes: the runtime state stays short, under /run.
RUN_DIR="${SIGNAL_RAG_ENGINE_RUN:-/run/signal-rag-engine}"
ENV_FILE="$CACHE/engine.env"
DOCKER=/usr/bin/docker
COMPOSE=/usr/bin/docker-compose
HOST_CA=/etc/ssl/certs/ca-certificates.crt
STANDIN_LABEL=org.signal-rag.stand-in

log() { printf 'container-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

engine_answers() {  # $1: DOCKER_HOST value
  DOCKER_HOST="$1" timeout 10 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_packages() {
  local missing=()
  [[ -x "$DOCKER" && -x /usr/sbin/dockerd ]] || missing+=(docker.io)
  [[ -x "$COMPOSE" ]] || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} yourself"
  [[ "$(id -u)" -eq 0 ]] || die "not root: install ${missing[*]} (apt-get) or set DOCKER_HOST"
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2
  # policy-rc.d: the package must not start its own system daemon (we start ours below).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2 || { [[ $made_policy == 1 ]] && rm -f "$policy"; die "apt-get failed"; }
  [[ $made_policy == 1 ]] && rm -f "$policy"
  return 0
}

# overlay2 when this kernel mounts overlayfs on the data root's file system (a container
# then starts from the image's layers as they are), else vfs, which works everywhere but
# copies the whole image for every container: tens of seconds each on a busy disk.
storage_driver() {
  case "${SIGNAL_RAG_ENGINE_STORAGE:-auto}" in
    vfs | overlay2) printf '%s\n' "$SIGNAL_RAG_ENGINE_STORAGE"; return ;;
    auto) ;;
    *) die "SIGNAL_RAG_ENGINE_STORAGE must be auto, overlay2 or vfs" ;;
  esac
  local probe driver=vfs
  probe="$(mktemp -d "$DATA_ROOT/.overlay-probe.XXXXXX")"
  mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
      "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"
    driver=overlay2
  fi
  rm -rf "$probe"
  printf '%s\n' "$driver"
}

start_daemon() {
  [[ "$(id -u)" -eq 0 ]] || die "starting dockerd needs root (or set DOCKER_HOST)"
  mkdir -p "$DATA_ROOT" "$RUN_DIR"
  local sock="unix://$RUN_DIR/docker.sock" driver
  driver="$(storage_driver)"
  log "starting dockerd ($driver, no iptables, no bridge), data root $DATA_ROOT"
  # setsid: the daemon outlives this script and is not hit by the caller's Ctrl-C. nice:
  # builds and containers run as the daemon's children, so `nice docker build` alone
  # would leave the work at full priority on a shared machine.
  setsid nice -n 10 /usr/sbin/dockerd --host "$sock" --data-root "$DATA_ROOT" \
    --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/dockerd.pid" \
    --storage-driver "$driver" --iptables=false --ip-masq=false --bridge=none \
    >"$CACHE/dockerd.log" 2>&1 </dev/null &
  # Marked as ours at once: whatever fails after this, `down` can stop it.
  local pid=$!
  printf '%s\n' "$pid" >"$RUN_DIR/started-by-us"
  local deadline=$((SECONDS + 60))
  until engine_answers "$sock"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$CACHE/dockerd.log" >&2
      rm -f "$RUN_DIR/started-by-us"
      die "dockerd exited (log: $CACHE/dockerd.log)"
    fi
    if (( SECONDS >= deadline )); then
      cmd_down
      die "dockerd did not answer within 60 s ($CACHE/dockerd.log)"
    fi
    sleep 0.5
  done
  log "dockerd $pid answers on $sock"
}

# As the official slim images do: no apt lists, caches, logs, manuals, info pages or
# translations (copyright files stay), and dpkg keeps them out of later installs too.
slim_rootfs() {  # $1: root directory
  local root="$1"
  rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin \
    "$root/var/cache/apt/archives/"*.deb "$root/var/log/"*.log \
    "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/locale/"*
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' >"$root/etc/dpkg/dpkg.cfg.d/docker"
  # The official image's suites: debootstrap writes only `bookworm main`.
  rm -f "$root/etc/apt/sources.list"
  printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' \
    'Suites: bookworm bookworm-updates' 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' 'Types: deb' \
    'URIs: http://deb.debian.org/debian-security' 'Suites: bookworm-security' \
    'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
    >"$root/etc/apt/sources.list.d/debian.sources"
}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

build_standins() {
  local debian=debian:bookworm-slim python=python:3.11-slim-bookworm redis=redis:7.4-alpine
  local work
  if ! image_exists "$debian"; then
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing"
    work="$(mktemp -d "$CACHE/.debootstrap.XXXXXX")"
    log "debootstrap --variant=minbase bookworm (stand-in for $debian)"
    # --cache-dir keeps the .deb files: a later cold data root needs no second download.
    mkdir -p "$CACHE/debootstrap-debs"
    if ! nice -n 10 debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-debs" \
        bookworm "$work/root" \
        http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1; then
      tail -n 20 "$work/debootstrap.log" >&2
      rm -rf "$work"
      die "debootstrap failed"
    fi
    slim_rootfs "$work/root"
    tar -C "$work/root" --numeric-owner -c . \
      | "$DOCKER" import --change 'CMD ["bash"]' \
          --change "LABEL $STANDIN_LABEL=debootstrap-minbase-bookworm" - "$debian" >&2
    rm -rf "$work"
  fi
  if ! image_exists "$python"; then
    work="$(mktemp -d "$CACHE/.standin.XXXXXX")"
    cp "$ROOT/docker/standin/Dockerfile" "$work/Dockerfile"
    cp "$HOST_CA" "$work/host-ca-certificates.crt"
    log "building the stand-in $python on $debian"
    DOCKER_BUILDKIT=1 nice -n 10 "$DOCKER" build --network host --quiet \
      --label "$STANDIN_LABEL=debian-python3.11" -t "$python" "$work" >&2 \
      || { rm -rf "$work"; die "stand-in build failed"; }
    rm -rf "$work"
  fi
  if ! image_exists "$redis"; then
    log "building the stand-in $redis on $debian"
    DOCKER_BUILDKIT=1 nice -n 10 "$DOCKER" build --network host --quiet \
      --label "$STANDIN_LABEL=debian-redis-server" -t "$redis" \
      -f "$ROOT/docker/standin/redis.Dockerfile" "$ROOT/docker/standin" >&2 \
      || die "stand-in build failed"
  fi
}

write_env() {  # $1: DOCKER_HOST, $2: 1 when we started the daemon
  local tmp
  tmp="$(mktemp "$CACHE/.engine.env.XXXXXX")"
  {
    printf '# Written by scripts/container-engine.sh; KEY=value, values single-quoted.\n'
    printf "DOCKER='%s'\n" "$DOCKER"
    printf "DOCKER_COMPOSE='%s'\n" "$COMPOSE"
    printf "DOCKER_HOST='%s'\n" "$1"
    printf "ENGINE_STARTED='%s'\n" "$2"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
  printf '%s\n' "$ENV_FILE"
}

cmd_up() {
  local host started=0
  if [[ -n "${DOCKER_HOST:-}" ]]; then
    [[ -x "$DOCKER" ]] || DOCKER="$(command -v docker)" || die "no docker client"
    [[ -x "$COMPOSE" ]] || COMPOSE="$(command -v docker-compose)" || die "no docker-compose"
    engine_answers "$DOCKER_HOST" || die "DOCKER_HOST=$DOCKER_HOST does not answer"
    host="$DOCKER_HOST"
  else
    install_packages
    host="unix://$RUN_DIR/docker.sock"
    if ! engine_answers "$host"; then
      # One start at a time: concurrent test runs share the data root.
      mkdir -p "$RUN_DIR"
      exec 9>"$RUN_DIR/.lock"
      flock 9
      if ! engine_answers "$host"; then
        start_daemon
        started=1
      fi
      flock -u 9
    fi
  fi
  export DOCKER_HOST="$host"
  build_standins
  write_env "$host" "$started"
}

cmd_down() {
  local marker="$RUN_DIR/started-by-us" pid
  [[ -f "$marker" ]] || { log "no dockerd started by this script is running"; return 0; }
  pid="$(cat "$marker")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd $pid"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null; do
      (( SECONDS < deadline )) || { log "dockerd $pid still running after 60 s"; exit 1; }
      sleep 0.5
    done
  fi
  rm -f "$marker"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) engine_answers "${DOCKER_HOST:-unix://$RUN_DIR/docker.sock}" ;;
  *) die "usage: $0 up|down|status" ;;
esac
