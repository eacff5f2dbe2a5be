"""Helpers of the cluster tiers: the sharded sweep every test runs (collect -m on the embedded
backend, each job its own embedded server), waiting for a shard to be part-way, the
exactly-once checks over the shards and their merge. A plain module, imported by name."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

SHARDS = 4
TASKS = 64  # the embedded backend's built-in tasks
REPEATS = 4  # 64 x 4 / 4 shards = 64 rollouts per shard
EXPECTED = sorted((t, r) for t in range(TASKS) for r in range(REPEATS))
TIMEOUT_S = 240


def sweep_args(sweep_dir: Path, *launcher: str, latency_ms: int = 20) -> list[str]:
    return ["-m", *launcher, f"shard_index={','.join(map(str, range(SHARDS)))}", f"num_shards={SHARDS}",
            f"limit={TASKS}", f"num_repeats={REPEATS}", f"servers.latency_ms={latency_ms}",
            "num_samples_in_parallel=8", "progress=off", f"hydra.sweep.dir={sweep_dir}"]


def start(collect: str, args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([collect, *args], cwd=cwd, env={**env, "HYDRA_FULL_ERROR": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, out, err


def wait_rows(rows: Path, at_least: int = 1, timeout: float = 120) -> None:
    """Until ``rows`` has some lines (the job is running, part-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rows.exists() and rows.read_text().count("\n") >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"{rows} got no rows in {timeout:.0f} s")


def resume_command(stderr: str) -> list[str]:
    """The arguments of the printed ``collect -m ... resume_from_cache=true`` line."""
    line = next(ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("collect -m"))
    assert "resume_from_cache=true" in line, line
    return shlex.split(line)[1:]


def summary(sweep_dir: Path) -> dict[int, dict]:
    doc = json.loads((sweep_dir / "sweep_summary.json").read_text())
    return {j["job"]: j for j in doc["jobs"]}


def keys_of(path: Path) -> list[tuple[int, int]]:
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]


def check_exactly_once(sweep_dir: Path, merge_rollouts: str, *, cwd: Path, env: dict[str, str]) -> None:
    """Every shard holds its share once, the summary says 4 x ok, the merge holds every rollout once."""
    per_shard = [keys_of(sweep_dir / str(n) / "rollouts.jsonl") for n in range(SHARDS)]
    for n, keys in enumerate(per_shard):
        assert len(keys) == len(set(keys)) == len(EXPECTED) // SHARDS, f"shard {n}: {len(keys)} rows"
    assert sorted(k for keys in per_shard for k in keys) == EXPECTED
    jobs = summary(sweep_dir)
    assert sorted(jobs) == list(range(SHARDS))
    assert [(jobs[n]["status"], jobs[n]["rollouts"], int(jobs[n]["shard_index"])) for n in range(SHARDS)] == \
        [("ok", len(EXPECTED) // SHARDS, n) for n in range(SHARDS)]
    merged = cwd / f"merged_{sweep_dir.name}.jsonl"
    proc = subprocess.run([merge_rollouts, str(sweep_dir), "-o", str(merged)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"Merged {len(EXPECTED)} rollouts from {SHARDS} shard output(s)" in proc.stdout, proc.stdout
    assert sorted(keys_of(merged)) == EXPECTED and len(keys_of(merged)) == len(EXPECTED)
