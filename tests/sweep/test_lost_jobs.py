"""Lost jobs (sweep/lost_jobs.py): every fetcher is called, a raising one becomes a LOST record
that the summary shows as ``lost`` and that the job's own record (if any) wins over."""

import json

from hydra.core.utils import JobReturn, JobStatus

from gym_rollouts.sweep.lost_jobs import gather, lost_record_path
from gym_rollouts.sweep.summary import build_rows, read_records


def _ok() -> JobReturn:
    return JobReturn(overrides=["shard_index=0"], status=JobStatus.COMPLETED, _return_value=0)


def _cancelled() -> JobReturn:
    raise RuntimeError("Job 7_1 has not produced any output (state: CANCELLED by 0)")


def test_gather_calls_every_fetcher_and_records_the_lost_one(tmp_path):
    called = []
    fetchers = [lambda: called.append(0) or _ok(), lambda: called.append(1) or _cancelled(),
                lambda: called.append(2) or _ok()]
    results = gather(fetchers, [["shard_index=0"], ["shard_index=1"], ["shard_index=2"]], 0, tmp_path)
    assert called == [0, 1, 2] and len(results) == 3
    assert results[1].status == JobStatus.COMPLETED and results[1].return_value == 130  # the sweeper carries on
    record = json.loads(lost_record_path(tmp_path, 1).read_text())
    assert record["status"] == "LOST" and "CANCELLED" in record["error"] and record["overrides"] == ["shard_index=1"]
    rows, _ = build_rows(read_records(tmp_path))
    assert [(r["job"], r["status"]) for r in rows] == [(1, "lost")]


def test_a_jobs_own_record_wins_over_its_lost_record(tmp_path):
    gather([_cancelled], [["shard_index=0"]], 0, tmp_path)
    own = tmp_path / "0" / "sweep_job.json"
    own.parent.mkdir()
    own.write_text(json.dumps({"job": 0, "status": "COMPLETED", "exit_code": 0, "overrides": ["shard_index=0"]}))
    assert [r["status"] for r in read_records(tmp_path)] == ["COMPLETED"]
