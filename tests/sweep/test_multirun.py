"""Multiruns through our CLI on the embedded backend: job dirs, sweep summary, sharding + merge,
the joblib and submitit_local launchers, and an experiment recipe (real subprocesses)."""

import csv
import json

from sweep_helpers import jsonl, keys, run_cli

from gym_rollouts.engine.outputs import OutputPaths


def test_2x2_multirun_writes_4_job_dirs_and_a_4_row_summary(tmp_path, collect):
    sweep = tmp_path / "sweep"
    proc = collect("-m", "responses_create_params.temperature=0.2,0.8", "num_repeats=1,2", "limit=4",
                   f"hydra.sweep.dir={sweep}")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    expected = {(0.2, 1), (0.2, 2), (0.8, 1), (0.8, 2)}
    seen = set()
    for job in jobs:
        paths = OutputPaths(job / "rollouts.jsonl")
        rows = jsonl(paths.rows)
        temps = {r["response"]["temperature"] for r in rows}
        repeats = max(r["_ng_rollout_index"] for r in rows) + 1
        assert len(temps) == 1 and len(rows) == 4 * repeats
        seen.add((temps.pop(), repeats))
        assert paths.aggregate_metrics.is_file() and paths.materialized_inputs.is_file()
    assert seen == expected
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert len(summary["jobs"]) == 4
    by_job = {j["job"]: j for j in summary["jobs"]}
    for job in jobs:
        row = by_job[int(job.name)]
        assert row["rollouts"] == len(jsonl(job / "rollouts.jsonl")) and row["status"] == "ok"
        assert row["output_jsonl_fpath"] == str(job / "rollouts.jsonl")
    assert {(float(j["responses_create_params.temperature"]), int(j["num_repeats"]))
            for j in summary["jobs"]} == expected
    with (sweep / "sweep_summary.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert "Sweep summary (4 jobs)" in proc.stdout
    # the same sweep again on the same dir: every job refuses the existing output (exit 2), and
    # the summary says so instead of showing the earlier run's metrics
    again = collect("-m", "responses_create_params.temperature=0.2,0.8", "num_repeats=1,2", "limit=4",
                    f"hydra.sweep.dir={sweep}", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [j["status"] for j in summary["jobs"]] == ["no_metrics"] * 4
    assert all(j["rollouts"] is None for j in summary["jobs"])


def test_4_shards_on_joblib_merge_to_exactly_the_unsharded_run(tmp_path, collect):
    collect("limit=4", "num_repeats=2", f"output_jsonl_fpath={tmp_path / 'full.jsonl'}")
    out = tmp_path / "shards" / "out.jsonl"
    collect("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "shard_index=0,1,2,3", "num_shards=4",
            "limit=4", "num_repeats=2", f"output_jsonl_fpath={out}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    shard_files = sorted(p.name for p in out.parent.glob("out_job*.jsonl") if p.stem.count("_") == 1)
    assert shard_files == [f"out_job{n}.jsonl" for n in range(4)]  # explicit path: job number in the name
    per_shard = [keys(jsonl(out.parent / name)) for name in shard_files]
    assert all(len(k) == 2 for k in per_shard)  # one task (two repeats) per shard
    merged = tmp_path / "merged.jsonl"
    proc = run_cli("merge_rollouts", str(out.parent), "-o", str(merged), cwd=tmp_path)
    assert "Merged 8 rollouts from 4 shard output(s)" in proc.stdout
    full = OutputPaths(tmp_path / "full.jsonl")
    assert keys(jsonl(merged)) == sorted(keys(jsonl(full.rows)))
    assert sorted(map(json.dumps, jsonl(OutputPaths(merged).materialized_inputs))) == \
        sorted(map(json.dumps, jsonl(full.materialized_inputs)))  # task indices stayed global
    merged_rows = {(r["_ng_task_index"], r["_ng_rollout_index"]): r for r in jsonl(merged)}
    for row in jsonl(full.rows):
        twin = merged_rows[(row["_ng_task_index"], row["_ng_rollout_index"])]
        assert twin["responses_create_params"] == row["responses_create_params"]
    metrics = json.loads(OutputPaths(merged).aggregate_metrics.read_text())
    assert metrics[0]["agent_metrics"]["count"] == 8


def test_submitit_local_runs_a_2_job_sweep(tmp_path, collect):
    sweep = tmp_path / "sweep"
    collect("-m", "hydra/launcher=submitit_local", "num_repeats=1,2", "limit=2", f"hydra.sweep.dir={sweep}")
    assert (sweep / ".submitit").is_dir()
    counts = sorted(len(jsonl(sweep / n / "rollouts.jsonl")) for n in ("0", "1"))
    assert counts == [2, 4]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert sorted(j["rollouts"] for j in summary["jobs"]) == [2, 4]


def test_shards_experiment_recipe_runs_and_merges(tmp_path, collect):
    sweep = tmp_path / "sweep"
    collect("-m", "+experiment=shards_local", "hydra.launcher.n_jobs=2", "limit=6", f"hydra.sweep.dir={sweep}")
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert sorted(int(j["shard_index"]) for j in summary["jobs"]) == [0, 1, 2, 3]
    assert sum(j["rollouts"] for j in summary["jobs"]) == 6
    merged = tmp_path / "all.jsonl"
    run_cli("merge_rollouts", str(sweep), "-o", str(merged), cwd=tmp_path)
    assert keys(jsonl(merged)) == [(t, 0) for t in range(6)]
