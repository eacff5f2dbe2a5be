"""The sharded sweep as Ray tasks on a real one-node Ray cluster (ray_peer.py), from the Ray venv:
``collect -m hydra/launcher=ray_cluster hydra.launcher.ray.init.address=auto``, with the Ray
worker process running one job killed mid-run (SIGKILL): exit 130, the summary says which job
was lost, the printed resume command (a full sweep through Ray again, exit 0) finishes it, and
shards + merge hold every rollout exactly once. One sweep and its resume only: a clean sweep
first would add ~30 s to CI for nothing the resumed sweep does not check."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cluster_helpers import SHARDS, check_exactly_once, finish, resume_command, start, summary, sweep_args, wait_rows

# one CPU per job (the preset reserves 2): the 4 jobs run at once on the 4-CPU test head
LAUNCHER = ("hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=auto", "hydra.launcher.ray.remote.num_cpus=1")


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _holder_of(path: Path) -> int:
    """The pid of the Ray worker that has ``path`` open (the job's sink writes it)."""
    target = str(path.resolve())
    for pid in _pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if not cmdline.startswith("ray::"):
                continue
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no Ray worker has {target} open")


def _children(pid: int) -> list[int]:
    kids = []
    for child in _pids():
        try:
            if int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(child)
        except (OSError, IndexError, ValueError):
            continue
    return kids


def test_killed_ray_worker_exits_130_and_the_printed_command_finishes_exactly_once(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(ray_cluster.bin("collect"), sweep_args(sweep, *LAUNCHER, latency_ms=150), cwd=tmp_path,
                 env=ray_cluster.env)
    rows = sweep / "2" / "rollouts.jsonl"
    wait_rows(rows)
    worker = _holder_of(rows)
    orphans = _children(worker)  # the job's embedded server: ours to stop once its parent is gone
    os.kill(worker, signal.SIGKILL)
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    code, out, err = finish(proc)
    assert code == 130, err[-4000:]
    assert "job 2 (shard_index=2" in err and "did not finish" in err, err[-4000:]
    jobs = summary(sweep)
    assert [jobs[n]["status"] for n in range(SHARDS)] == ["ok", "ok", "lost", "ok"]
    assert rows.read_text().count("\n") < 64  # killed part-way
    code, out, err = finish(start(ray_cluster.bin("collect"), resume_command(err), cwd=tmp_path, env=ray_cluster.env))
    assert code == 0, err[-4000:]
    check_exactly_once(sweep, ray_cluster.bin("merge_rollouts"), cwd=tmp_path, env=ray_cluster.env)
