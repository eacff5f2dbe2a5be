#!/usr/bin/env bash
# Set up the NeMo Gym test tier (see docs/nemo_gym_tier.md):
#   1. .venv-nemo-gym/ at the repo root with nemo-gym (pinned) and uv, on Python 3.12 (pyenv's
#      3.12.1 by default: nemo-gym 0.4.0 needs Python >= 3.12, the default python3 here is 3.11);
#   2. the per-server venvs that `ng_run` makes before it starts a server (one per server folder:
#      each environment, simple_agent, vllm_model), built ahead by ng_run itself in its dry-run mode
#      into .venv-nemo-gym/server_venvs/, so that the tests' `ng_run` (skip_venv_if_present) starts
#      offline, without any install.
# Idempotent: a stamp records what step 1 installed, a marker in each server venv says it is
# complete; a re-run with everything in place takes about a second.
#
# Environment knobs (all optional):
#   NEMO_GYM_VERSION   nemo-gym version to install                   (default 0.4.0)
#   NEMO_GYM_PYTHON    interpreter for the venv (3.12 or 3.13)        (default: pyenv's 3.12.1, see below)
#   NEMO_GYM_ENVS      comma-separated environments to prepare        (default: the tier's three)
#   UV_CACHE_DIR       uv's cache (also handed to ng_run)             (default: uv's own, ~/.cache/uv)
set -euo pipefail

NEMO_GYM_VERSION="${NEMO_GYM_VERSION:-0.4.0}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv-nemo-gym"
BOOT="$REPO/.cache/uv-bootstrap"
STAMP="$VENV/.gym_rollouts_setup_stamp"
export UV_PYTHON_DOWNLOADS=never  # never fetch an interpreter: use the one found below

T0=$(date +%s)
step_t=$T0
log() { echo "[setup_nemo_gym] $*"; }
die() { echo "[setup_nemo_gym] ERROR: $*" >&2; exit 1; }
lap() {
  local now; now=$(date +%s)
  log "$1 took $((now - step_t)) s"
  step_t=$now
}
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "[setup_nemo_gym] FAILED (exit $rc) after $(( $(date +%s) - T0 )) s; see the messages above." >&2; fi' EXIT

# --- interpreter: NEMO_GYM_PYTHON, else pyenv 3.12.1, other 3.12.x / 3.13.x, else PATH -----------
py_ok() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 12), (3, 13)) else 1)' 2>/dev/null; }
find_python() {
  if [ -n "${NEMO_GYM_PYTHON:-}" ]; then
    py_ok "$NEMO_GYM_PYTHON" || die "NEMO_GYM_PYTHON=$NEMO_GYM_PYTHON is not a Python 3.12/3.13 interpreter"
    echo "$NEMO_GYM_PYTHON"; return
  fi
  local root c
  if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root)"; else root="${PYENV_ROOT:-$HOME/.pyenv}"; fi
  for c in "$root/versions/3.12.1/bin/python3" \
           $(ls -d "$root"/versions/3.12.*/bin/python3 2>/dev/null | sort -rV) \
           $(ls -d "$root"/versions/3.13.*/bin/python3 2>/dev/null | sort -rV) \
           $(command -v python3.12 python3.13 2>/dev/null || true); do
    if py_ok "$c"; then echo "$c"; return; fi
  done
  die "no Python 3.12 or 3.13 found (nemo-gym $NEMO_GYM_VERSION needs >= 3.12). Looked for
  $root/versions/3.12.1/bin/python3, $root/versions/3.12.*/ and 3.13.*/bin/python3, python3.12/python3.13 on PATH.
  Install one (pyenv install 3.12.1) or point NEMO_GYM_PYTHON at one."
}
PY="$(find_python)"
PY_VER="$("$PY" -c 'import platform; print(platform.python_version())')"

# --- uv: the copy setup_real_vllm.sh bootstraps into .cache/uv-bootstrap, else bootstrap it --------
UV="$BOOT/bin/uv"
if [ ! -x "$UV" ]; then
  log "bootstrapping uv into $BOOT"
  "$PY" -m pip install --quiet --disable-pip-version-check --target "$BOOT" uv \
    || die "could not install uv with $PY -m pip (is PyPI reachable?)"
  [ -x "$UV" ] || die "uv is not at $UV after the bootstrap"
  lap "uv bootstrap"
fi
UV_VER="$("$UV" --version | awk '{print $2}')"
WANT="nemo-gym==$NEMO_GYM_VERSION python=$PY_VER ($PY) uv==$UV_VER"

# --- 1. the venv ------------------------------------------------------------------------------
venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/ng_run" ] && [ -x "$VENV/bin/uv" ] || return 1
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] || return 1
  "$VENV/bin/python" -c "import sys; from importlib.metadata import version; sys.exit(version('nemo-gym') != sys.argv[1])" \
    "$NEMO_GYM_VERSION" 2>/dev/null
}

if venv_ok; then
  log "$VENV already has nemo-gym==$NEMO_GYM_VERSION (stamp ok), skipping install"
else
  log "installing nemo-gym==$NEMO_GYM_VERSION into $VENV (python $PY_VER at $PY, uv $UV_VER, cache $("$UV" cache dir))"
  rm -rf "$VENV"  # also drops server_venvs/: they must match this venv's ray and openai
  "$UV" venv --quiet --python "$PY" "$VENV" || die "uv could not create $VENV with $PY"
  # uv into the venv too: ng_run calls `uv` for the server venvs; pinned to the bootstrap's version.
  # uv's default link mode (hardlinks from its cache when on the same file system) keeps the six
  # ~1.1 GB venvs cheap; a cache clean does not break hardlinked files.
  "$UV" pip install --quiet --python "$VENV/bin/python" "nemo-gym==$NEMO_GYM_VERSION" "uv==$UV_VER" \
    || die "uv could not install nemo-gym==$NEMO_GYM_VERSION into $VENV (is PyPI reachable?)"
  "$VENV/bin/python" -c "import nemo_gym" || die "the fresh $VENV cannot import nemo_gym (see above)"
  echo "$WANT" >"$STAMP"
  lap "install"
fi

# --- 2. the per-server venvs, built by ng_run's own dry run ------------------------------------
step_t=$(date +%s)
env_args=()
if [ -n "${NEMO_GYM_ENVS:-}" ]; then env_args=(--envs "$NEMO_GYM_ENVS"); fi
(cd "$REPO" && "$VENV/bin/python" -m gym_rollouts.testing.nemo_gym prepare "${env_args[@]}") \
  || die "ng_run could not build the server venvs (its log is named above)"
lap "server venvs"

log "done in $(( $(date +%s) - T0 )) s: venv $VENV, server venvs $VENV/server_venvs"
log "run the tier with: .venv/bin/python -m pytest tests/nemo_gym -q"
