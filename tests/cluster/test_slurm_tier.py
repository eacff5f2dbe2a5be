"""The sharded sweep as one SLURM job array on a real one-node cluster (slurm_peer.py):
``collect -m hydra/launcher=slurm`` with the preset's own sizing, the array seen in squeue while
it runs and in sacct after, exactly-once over shards and merge, what a job uses against what the
preset asks for, and ``scancel`` of one array task mid-run: exit 130, the summary says which job
was lost, the printed resume command finishes the sweep, every rollout exactly once again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml
from cluster_helpers import SHARDS, check_exactly_once, finish, resume_command, start, summary, sweep_args, wait_rows

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRESET = yaml.safe_load((REPO / "conf/hydra/launcher/slurm.yaml").read_text())
LAUNCHER = ("hydra/launcher=slurm",)


def _array_tasks(cluster) -> dict[str, str]:
    """``{"<array job>_<task>": state}`` of the array tasks squeue shows now."""
    out = cluster.run("squeue", "-h", "-r", "-o", "%F_%K %T").stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _sacct(cluster, job: str) -> list[dict[str, str]]:
    fields = ["JobID", "State", "MaxRSS", "TotalCPU", "Elapsed", "AllocCPUS", "ReqMem"]
    out = cluster.run("sacct", "-j", job, "-n", "-P", "-o", ",".join(fields)).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]


def _kib(value: str) -> float:
    units = {"K": 1, "M": 1024, "G": 1024 ** 2}
    return float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value or 0)


def _seconds(value: str) -> float:  # sacct's [DD-][HH:]MM:SS[.mmm]
    parts = [float(p) for p in value.split("-")[-1].split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def test_sharded_sweep_is_one_job_array_and_merges_exactly_once(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(str(BIN / "collect"), sweep_args(sweep, *LAUNCHER), cwd=tmp_path, env=slurm_cluster.env)
    seen: dict[str, str] = {}
    while proc.poll() is None and len(seen) < SHARDS:
        seen.update(_array_tasks(slurm_cluster))
        time.sleep(0.2)
    code, out, err = finish(proc)
    assert code == 0, err[-4000:]
    assert len(seen) == SHARDS and len({key.split("_")[0] for key in seen}) == 1, seen  # one array, 4 tasks
    array = next(iter(seen)).split("_")[0]
    assert "Sweep summary (4 jobs)" in out
    check_exactly_once(sweep, str(BIN / "merge_rollouts"), cwd=tmp_path, env=slurm_cluster.env)
    steps = {r["JobID"]: r for r in _sacct(slurm_cluster, array)}
    tasks = [steps[f"{array}_{n}"] for n in range(SHARDS)]
    assert [t["State"] for t in tasks] == ["COMPLETED"] * SHARDS
    assert {t["AllocCPUS"] for t in tasks} == {str(PRESET["cpus_per_task"])}
    for n in range(SHARDS):  # the step running collect (and its embedded server): what it used
        step = steps[f"{array}_{n}.0"]
        assert _kib(step["MaxRSS"]) < PRESET["mem_gb"] * 1024 ** 2 / 8, step  # far below the preset's ask
        assert _seconds(step["TotalCPU"]) <= _seconds(step["Elapsed"]) * PRESET["cpus_per_task"], step


def test_scancel_of_one_array_task_exits_130_and_the_printed_command_finishes_exactly_once(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(str(BIN / "collect"), sweep_args(sweep, *LAUNCHER, latency_ms=150), cwd=tmp_path,
                 env=slurm_cluster.env)
    wait_rows(sweep / "2" / "rollouts.jsonl")
    task = next(key for key in _array_tasks(slurm_cluster) if key.endswith("_2"))
    slurm_cluster.run("scancel", task)
    code, out, err = finish(proc)
    assert code == 130, err[-4000:]
    assert "job 2 (shard_index=2" in err and "did not finish" in err, err[-4000:]
    jobs = summary(sweep)
    assert [jobs[n]["status"] for n in range(SHARDS)] == ["ok", "ok", "lost", "ok"]
    assert (sweep / "2" / "rollouts.jsonl").read_text().count("\n") < 64  # cancelled part-way
    assert _sacct(slurm_cluster, task)[0]["State"].startswith("CANCELLED")
    resumed = start(str(BIN / "collect"), resume_command(err), cwd=tmp_path, env=slurm_cluster.env)
    code, out, err = finish(resumed)
    assert code == 0, err[-4000:]
    check_exactly_once(sweep, str(BIN / "merge_rollouts"), cwd=tmp_path, env=slurm_cluster.env)
