#!/usr/bin/env bash
# Set up the Ray test tier (tests/cluster/test_ray_tier.py, docs/sweeps.md "Test tiers"):
# .venv-ray/ at the repo root with this package installed editable with its [ray] extra
# (hydra-ray-launcher pulls in Ray, boto3 and pins cloudpickle<3, which the main .venv must not
# get). The tier's session fixture starts `ray start --head` on 127.0.0.1 from this venv once per
# pytest session and stops it afterwards.
# Idempotent: a stamp records what was installed (pyproject's digest + the Python); a re-run with
# the stamp in place takes well under a second.
#
# Environment knobs (optional):
#   GYM_ROLLOUTS_RAY=0   skip this tier (nothing installed; the tier's tests skip, also under CI)
#   RAY_PYTHON           interpreter for the venv (default python3; the package needs >= 3.11)
#   RAY_VERSION          Ray version the tier runs (default 2.60.0, the one docs/sweeps.md reports on;
#                        the [ray] extra itself accepts what hydra-ray-launcher does, Ray < 3)
set -euo pipefail
T0=$(date +%s)
log() { echo "[setup_ray] $*"; }
die() { echo "[setup_ray] ERROR: $*" >&2; exit 1; }
case "${GYM_ROLLOUTS_RAY:-1}" in 0|false|no|off) log "GYM_ROLLOUTS_RAY=${GYM_ROLLOUTS_RAY}: tier off, nothing to do"; exit 0;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv-ray"
STAMP="$VENV/.gym_rollouts_setup_stamp"
PY="${RAY_PYTHON:-python3}"
RAY_VERSION="${RAY_VERSION:-2.60.0}"
command -v "$PY" >/dev/null || die "RAY_PYTHON=$PY not found"
WANT="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16) ray==$RAY_VERSION $("$PY" -c 'import platform; print(platform.python_version())')"
if [ -x "$VENV/bin/ray" ] && [ -x "$VENV/bin/collect" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  log "$VENV up to date (stamp ok, $(( $(date +%s) - T0 )) s)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
UV="$REPO/.cache/uv-bootstrap/bin/uv"  # setup_real_vllm.sh's copy: much faster than pip, else pip
if [ -x "$UV" ]; then
  log "uv pip install -e '.[ray]' into $VENV"
  "$UV" pip install -q --python "$VENV/bin/python" -e "$REPO[ray]" "ray[default]==$RAY_VERSION"
else
  log "pip install -e '.[ray]' into $VENV"
  "$VENV/bin/pip" install -q -e "$REPO[ray]" "ray[default]==$RAY_VERSION"
fi
"$VENV/bin/python" -c 'import ray, hydra_plugins.hydra_ray_launcher, gym_rollouts' \
  || die "the install in $VENV does not import ray / hydra_ray_launcher / gym_rollouts"
echo "$WANT" >"$STAMP"
log "ray $("$VENV/bin/python" -c 'import ray; print(ray.__version__)') installed in $(( $(date +%s) - T0 )) s"
