"""Cluster tiers: the sharded sweep on a real SLURM and a real Ray cluster, one node each on
127.0.0.1 (docs/sweeps.md "Cluster test tiers").

Every test here gets the ``cluster`` marker. Fixtures (session-scoped, started at first use,
stopped at the end of the session):
  slurm_cluster  a SlurmCluster (slurm_peer.py): munged, MariaDB + slurmdbd, slurmctld, slurmd;
                 installed by ``bash scripts/setup_slurm.sh`` (apt, as root)
  ray_cluster    a RayCluster (ray_peer.py): ``ray start --head`` from ``.venv-ray``; installed by
                 ``bash scripts/setup_ray.sh``
Where a tier is not set up the tests skip with a reason saying how to set it up, except under CI
(``CI`` set and not "0"/"false"), where they fail: CI must run both tiers. A tier can be turned
off on a machine where it cannot run: ``GYM_ROLLOUTS_SLURM=0`` / ``GYM_ROLLOUTS_RAY=0`` (the setup
scripts then install nothing and the tests skip, also under CI).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))  # slurm_peer / ray_peer / cluster_helpers by plain names

from ray_peer import RayCluster  # noqa: E402
from slurm_peer import SlurmCluster, missing_binaries  # noqa: E402

RAY_VENV = REPO / ".venv-ray"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def _turned_off(flag: str) -> bool:
    value = os.environ.get(flag)
    return value is not None and not _truthy(value)


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs the SLURM or Ray test cluster (tests/cluster/)")


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marker
def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.cluster)


def _not_set_up(tier: str, reason: str) -> None:
    if _truthy(os.environ.get("CI")):
        pytest.fail(f"{tier} tier not set up under CI: {reason}", pytrace=False)
    pytest.skip(f"{tier} tier not set up: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    if _turned_off("GYM_ROLLOUTS_SLURM"):
        pytest.skip("SLURM tier turned off (GYM_ROLLOUTS_SLURM=0)")
    missing = missing_binaries()
    if missing:
        _not_set_up("SLURM", f"{', '.join(missing)} not installed: run `bash scripts/setup_slurm.sh` as root "
                             "(or set GYM_ROLLOUTS_SLURM=0 to turn the tier off)")
    if os.geteuid() != 0:
        _not_set_up("SLURM", "slurmd must run as root here (one-node cluster, SlurmdUser=root)")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Iterator[RayCluster]:
    if _turned_off("GYM_ROLLOUTS_RAY"):
        pytest.skip("Ray tier turned off (GYM_ROLLOUTS_RAY=0)")
    if not (RAY_VENV / "bin" / "ray").exists() or not (RAY_VENV / "bin" / "collect").exists():
        _not_set_up("Ray", f"{RAY_VENV} missing: run `bash scripts/setup_ray.sh` "
                           "(or set GYM_ROLLOUTS_RAY=0 to turn the tier off)")
    root = Path(tempfile.mkdtemp(prefix="gr-ray-", dir="/tmp"))  # short: Ray's socket paths live under it
    cluster = RayCluster(RAY_VENV, root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
