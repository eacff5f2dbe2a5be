"""A resumed run's aggregate metrics equal an uninterrupted run's (throughput aside), end to end:
``collect`` subprocesses against the slow embedded server, one killed with SIGKILL mid-run and
resumed, one left alone; rollouts that fail for good (no row) become missing rollouts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson

from engine_helpers import collect_argv, collect_env, read_rows, wait_for_lines
from gym_rollouts.embedded import EmbeddedProcess

TASKS, REPEATS = 40, 3
EXPLODE = frozenset({5, 17})  # every rollout of these tasks fails: no row, no group entry
RUN = ("num_repeats=3", "num_samples_in_parallel=6", "max_attempts=2", "resume_from_cache=true",
       "resource.cls=raising_resource:RaisingResource", "resource.name=raising")
THROUGHPUT = ("rollouts_this_run", "rollouts_per_s", "output_tokens_per_s")


def _write_inputs(path: Path) -> None:
    with path.open("wb") as fh:
        for i in range(TASKS):
            row = {"responses_create_params": {"input": f"What is {i} + {2 * i}? Answer with the number."},
                   "expected_answer": str(3 * i + (i % 4 == 0)),  # every 4th task is scored wrong
                   "task_id": f"t{i}", "difficulty": i % 3, "weight": 0.25 * i, "hard": i % 5 == 0}
            if i in EXPLODE:
                row["explode"] = True
            fh.write(orjson.dumps(row) + b"\n")


def _comparable(path: Path) -> list[dict[str, Any]]:
    entries = orjson.loads(path.read_bytes())
    for entry in entries:
        entry.pop("run")
        entry.pop("servers")
        for key in THROUGHPUT:
            entry["agent_metrics"].pop(key)
    return entries


def test_a_resumed_runs_metrics_equal_an_uninterrupted_runs(tmp_path: Path, slow_server: EmbeddedProcess,
                                                            start_collect, collect) -> None:
    _write_inputs(tmp_path / "in.jsonl")
    straight = tmp_path / "straight"
    straight.mkdir()
    shutil.copy(tmp_path / "in.jsonl", straight / "in.jsonl")
    whole = subprocess.run(collect_argv(slow_server, straight, *RUN), cwd=straight, env=collect_env(),
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert whole.returncode == 3, whole.stdout + whole.stderr

    proc = start_collect(*RUN)
    wait_for_lines(tmp_path / "out.jsonl", 45, proc)
    assert proc.poll() is None, "finished before the kill"
    proc.kill()
    proc.communicate()
    done_before = len(read_rows(tmp_path / "out.jsonl"))
    assert 45 <= done_before < TASKS * REPEATS - 3 * len(EXPLODE)
    resumed = collect(*RUN)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr

    want = _comparable(straight / "out_aggregate_metrics.json")
    got = _comparable(tmp_path / "out_aggregate_metrics.json")
    assert got == want
    [entry] = got
    groups = entry["group_level_metrics"]
    assert [g["_ng_task_index"] for g in groups] == [t for t in range(TASKS) if t not in EXPLODE]
    assert all(g["num_rollouts"] == g["expected_num_rollouts"] == REPEATS and g["missing_num_rollouts"] == 0
               for g in groups)
    assert entry["agent_metrics"]["failures"] == REPEATS * len(EXPLODE)
    assert groups[0]["mean/reward"] == 0.0 and groups[1]["mean/reward"] == 1.0
    assert groups[5]["mean/hard"] == 0.0 and groups[0]["median/weight"] == 0.0 and groups[2]["max/weight"] == 0.5
    assert [i["rollout_id"] for i in groups[3]["rollout_infos"]] == ["3:0", "3:1", "3:2"]
    m = entry["agent_metrics"]
    assert {k[len("mean/"):] for k in m if k.startswith("mean/")} == {k[len("median/"):] for k in m
                                                                       if k.startswith("median/")}
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".gym_rollouts_spool_*"))
