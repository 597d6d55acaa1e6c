#!/bin/sh
# Container entry point for signal-rag (docker/Dockerfile; tests/integration/test_entrypoint.py).
#
# 1. Secrets: every NAME_FILE variable (NAME = SIGNAL_RAG_* or OPENAI_API_KEY) is read and
#    exported as NAME; every file in the secrets directory named like such a variable (any
#    case, e.g. signal_rag_audit__pepper) is exported as NAME. An unreadable or empty
#    secret file is an error, and so is NAME set twice: in the environment and by a secret
#    file (NAME_FILE or the folder), or by both kinds of file. Silently preferring one
#    would hide a stale secret (e.g. a pepper in an env_file next to ./secrets/).
# 2. Configuration: docker/check_config.py validates it with the application's settings
#    model (plus the `serve` checks when the command is serve). One stderr line per problem.
# 3. First start: for `serve`, when no index exists (neither INDEX_DIR/manifest.json nor
#    INDEX_DIR.last-good) and the documents folder has files, run `signal-rag ingest` on it.
# 4. exec the command (default `signal-rag serve`), so it replaces this shell and gets
#    SIGTERM itself. A first argument that is a signal-rag subcommand gets `signal-rag`
#    put in front. Configuration problems exit with 2, the CLI's configuration code.
#
# Environment (defaults suit the image; tests point them at temporary folders):
#   SIGNAL_RAG_SECRETS_DIR    secrets folder (default /run/secrets; set but missing: error)
#   SIGNAL_RAG_DATA_DIR       data folder (the image sets /data)
#   SIGNAL_RAG_INDEX_DIR      index folder (default $SIGNAL_RAG_DATA_DIR/index)
#   SIGNAL_RAG_DOCUMENTS_DIR  documents to ingest on first start (default /documents)
#   SIGNAL_RAG_AUTO_INGEST    `false` skips step 3
#   SIGNAL_RAG_CHECK_CONFIG   path of check_config.py (default: beside this script)
#   SIGNAL_RAG_PYTHON         interpreter that runs it (default python3)
set -eu

EXIT_CONFIG=2
errors=0
secret_value=''

log() { printf 'entrypoint: %s\n' "$*" >&2; }
problem() { printf 'entrypoint: config error: %s\n' "$*" >&2; errors=$((errors + 1)); }

# Read a secret file into secret_value (trailing newlines dropped, as $(...) does).
read_secret() {  # $1: variable name for messages, $2: path
  if [ ! -f "$2" ] || [ ! -r "$2" ]; then
    problem "$1: cannot read secret file $2 (missing, not a file, or not readable by uid $(id -u))"
    return 1
  fi
  if ! secret_value=$(cat "$2" 2>/dev/null); then
    problem "$1: cannot read secret file $2"
    return 1
  fi
  if [ -z "$secret_value" ]; then
    problem "$1: secret file $2 is empty"
    return 1
  fi
  return 0
}

is_ours() {  # may this variable be set from a secret?
  case "$1" in
    *[!A-Z0-9_]*) return 1 ;;
    SIGNAL_RAG_?* | OPENAI_API_KEY) return 0 ;;
    *) return 1 ;;
  esac
}

is_set() {  # is the variable named $1 set (even to an empty value)?
  eval "[ -n \"\${$1+set}\" ]"
}

# 1a. NAME_FILE variables.
from_file=' '  # names exported from a NAME_FILE, for 1b's message
for file_var in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*_FILE\)=.*/\1/p'); do
  case "$file_var" in
    *__FILE) continue ;;  # SIGNAL_RAG_LOG__FILE is a setting, not NAME + _FILE
  esac
  name=${file_var%_FILE}
  is_ours "$name" || continue
  if is_set "$name"; then
    problem "$name and $file_var are both set: keep one"
    continue
  fi
  path=''
  eval "path=\${$file_var}"
  if read_secret "$file_var" "$path"; then
    export "$name=$secret_value"
    unset "$file_var"
    from_file="$from_file$name "
  fi
done

# 1b. The Docker secrets folder.
secrets_dir=${SIGNAL_RAG_SECRETS_DIR:-/run/secrets}
if [ -n "${SIGNAL_RAG_SECRETS_DIR:-}" ] && [ ! -d "$secrets_dir" ]; then
  problem "SIGNAL_RAG_SECRETS_DIR: $secrets_dir is not a directory"
elif [ -d "$secrets_dir" ]; then
  for path in "$secrets_dir"/*; do
    [ -e "$path" ] || continue  # an empty folder leaves the glob as it is
    name=$(basename "$path" | tr '[:lower:]' '[:upper:]')
    is_ours "$name" || continue
    case $from_file in
      *" $name "*)
        problem "$name: set by both ${name}_FILE and the secret file $path: keep one"
        continue ;;
    esac
    if is_set "$name"; then
      problem "$name: set in the environment and by the secret file $path: keep one (secrets belong in files, not in an env_file or environment:)"
      continue
    fi
    if read_secret "$name" "$path"; then
      export "$name=$secret_value"
    fi
  done
fi
secret_value=''

if [ "$errors" -gt 0 ]; then
  log "$errors configuration problem(s); not starting"
  exit "$EXIT_CONFIG"
fi

# The command: default serve; a bare subcommand runs under signal-rag.
if [ "$#" -eq 0 ]; then
  set -- signal-rag serve
fi
case "$1" in
  serve | ingest | health | ask | chat | graph | index | eval | guard | audit | backup | link)
    set -- signal-rag "$@" ;;
esac
serving=false
if [ "$1" = signal-rag ] && [ "${2:-}" = serve ]; then
  serving=true
fi

# 2. Validate the configuration with the application's own settings model.
if [ "$1" = signal-rag ]; then
  check=${SIGNAL_RAG_CHECK_CONFIG:-$(dirname "$0")/check_config.py}
  status=0
  if [ "$serving" = true ]; then
    "${SIGNAL_RAG_PYTHON:-python3}" "$check" --serve || status=$?
  else
    "${SIGNAL_RAG_PYTHON:-python3}" "$check" || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    log "configuration invalid (exit $status); not starting"
    exit "$EXIT_CONFIG"
  fi
fi

# 3. First start: build the index from the mounted documents.
if [ "$serving" = true ] && [ "${SIGNAL_RAG_AUTO_INGEST:-true}" != false ]; then
  data_dir=${SIGNAL_RAG_DATA_DIR:-data}
  index_dir=${SIGNAL_RAG_INDEX_DIR:-$data_dir/index}
  documents_dir=${SIGNAL_RAG_DOCUMENTS_DIR:-/documents}
  if [ -f "$index_dir/manifest.json" ] || [ -d "$index_dir.last-good" ]; then
    :  # an index exists; a damaged one is restored or reported by serve itself (RES-4)
  elif [ -d "$documents_dir" ] \
      && [ -n "$(find "$documents_dir" -type f ! -name '.*' 2>/dev/null | head -n 1)" ]; then
    log "no index at $index_dir: ingesting $documents_dir (first start)"
    status=0
    signal-rag ingest "$documents_dir" || status=$?
    case "$status" in
      0) log "ingest done" ;;
      1) log "warning: ingest skipped unreadable documents (listed above); starting" ;;
      "$EXIT_CONFIG")
        log "ingest failed with a configuration error; not starting"
        exit "$EXIT_CONFIG" ;;
      *) log "warning: ingest failed (exit $status); starting without an index (degraded)" ;;
    esac
  else
    log "no index at $index_dir and no documents in $documents_dir: starting degraded; run 'ingest PATH' to build one"
  fi
fi

# 4. Hand the process over to the command.
exec "$@"
