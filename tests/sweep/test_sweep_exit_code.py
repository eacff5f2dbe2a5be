"""``collect -m`` with a launcher that runs jobs in other processes (joblib) ends with the jobs'
code, not 0, and says which jobs did not succeed and how to finish (real subprocesses)."""

import json


def test_joblib_sweep_whose_jobs_refuse_exits_2_with_the_resume_command(tmp_path, collect):
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "shard_index=0,1", "num_shards=2", "limit=4",
            f"hydra.sweep.dir={sweep}")
    collect(*args)  # exit 0
    again = collect(*args, check=False)  # each job refuses the existing output: exit 2 in the job
    assert again.returncode == 2, again.stderr[-3000:]
    assert "2 sweep job(s) did not succeed" in again.stderr and "job 0 (shard_index=0" in again.stderr
    assert f"hydra.sweep.dir={sweep}" in again.stderr and "resume_from_cache=true" in again.stderr
    jobs = json.loads((sweep / "sweep_summary.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["no_metrics", "no_metrics"]
