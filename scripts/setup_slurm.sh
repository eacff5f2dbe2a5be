#!/usr/bin/env bash
# Set up the SLURM test tier (tests/cluster/test_slurm_tier.py, docs/sweeps.md "Test tiers"):
# installs Debian's slurm-wlm (slurmctld + slurmd + client commands), slurmdbd, mariadb-server
# (accounting: sacct works as on a real cluster, and submitit polls sacct for job states) and
# munge through apt. Nothing is configured or started here: the tier's session fixture
# (tests/cluster/conftest.py, slurm_peer.py) writes a one-node slurm.conf for 127.0.0.1 in a
# private temp dir, starts munged (unless running), a throw-away MariaDB, slurmdbd, slurmctld and
# slurmd once per pytest session, and stops them afterwards.
# Idempotent: with the daemons already installed it returns at once (no apt call).
#
# Environment knobs (optional):
#   GYM_ROLLOUTS_SLURM=0   skip this tier (nothing installed; the tier's tests skip, also under CI)
set -euo pipefail
T0=$(date +%s)
log() { echo "[setup_slurm] $*"; }
case "${GYM_ROLLOUTS_SLURM:-1}" in 0|false|no|off) log "GYM_ROLLOUTS_SLURM=${GYM_ROLLOUTS_SLURM}: tier off, nothing to do"; exit 0;; esac

have_all() { local b; for b in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
               command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || return 1; done; }
if have_all; then
  log "slurm $(slurmctld -V 2>/dev/null | awk '{print $2}') and munge already installed ($(( $(date +%s) - T0 )) s)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[setup_slurm] ERROR: slurm-wlm/slurmdbd/munge/mariadb-server are not all installed and this is" \
       "not root: run as root, or 'apt-get install slurm-wlm slurmdbd munge mariadb-server' yourself," \
       "or set GYM_ROLLOUTS_SLURM=0 to turn the tier off." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy slurm-wlm 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  log "apt-get update (no slurm-wlm candidate yet)"
  apt-get update -qq
fi
PKGS="slurm-wlm slurmdbd munge mariadb-server"
log "apt-get install $PKGS"
# policy-rc.d 101: the packages' postinst must not try to start services (no systemd here)
PRC=/usr/sbin/policy-rc.d; made_prc=0
if [ ! -e "$PRC" ]; then printf '#!/bin/sh\nexit 101\n' > "$PRC"; chmod +x "$PRC"; made_prc=1; fi
trap 'if [ $made_prc = 1 ]; then rm -f "$PRC"; fi' EXIT
apt-get install -y -qq --no-install-recommends $PKGS >/tmp/setup_slurm_apt.log 2>&1 \
  || { tail -30 /tmp/setup_slurm_apt.log >&2; echo "[setup_slurm] ERROR: apt-get install failed (log above)" >&2; exit 1; }
have_all || { echo "[setup_slurm] ERROR: installed, but a daemon or command is still missing (see $PKGS)" >&2; exit 1; }
log "installed slurm $(slurmctld -V | awk '{print $2}') in $(( $(date +%s) - T0 )) s"
