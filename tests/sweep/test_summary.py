"""The sweep summary from job records and metrics files on disk (no Hydra run needed)."""

import csv
import json

from gym_rollouts.sweep.paths import JOB_RECORD
from gym_rollouts.sweep.summary import format_table, read_records, summarize_sweep


def _job(sweep, num, overrides, metrics=None, status="COMPLETED", written=True):
    job_dir = sweep / str(num)
    job_dir.mkdir(parents=True)
    rows = job_dir / "rollouts.jsonl"
    record = {"job": num, "overrides": overrides, "status": status, "output_dir": str(job_dir),
              "output_jsonl_fpath": str(rows), "metrics_written": written}
    (job_dir / JOB_RECORD).write_text(json.dumps(record))
    if metrics is not None:
        (job_dir / "rollouts_aggregate_metrics.json").write_text(json.dumps(metrics))


def _metrics(rollouts, failures, reward):
    return {"summary": {"rollouts": rollouts, "failures": failures, "mean_reward": reward,
                        "rollouts_per_s": 2.5, "output_tokens_per_s": 80.0}}


def test_summary_has_one_row_per_job_with_swept_columns(tmp_path):
    _job(tmp_path, 1, ["++t=0.8", "++limit=4"], _metrics(4, 1, 0.25))
    _job(tmp_path, 0, ["++t=0.2", "++limit=4"], _metrics(4, 0, 0.75))
    _job(tmp_path, 2, ["++t=1.0", "++limit=4"], None)
    _job(tmp_path, 3, ["++t=1.2", "++limit=4"], None, status="FAILED")
    _job(tmp_path, 4, ["++t=1.4", "++limit=4"], _metrics(4, 0, 0.5), written=False)  # an earlier run's file
    rows, columns, (json_path, csv_path) = summarize_sweep(tmp_path)
    assert [r["job"] for r in rows] == [0, 1, 2, 3, 4]
    assert columns[:3] == ["job", "t", "status"] and "limit" not in columns  # limit did not vary
    assert [r["t"] for r in rows] == ["0.2", "0.8", "1.0", "1.2", "1.4"]
    assert [r["status"] for r in rows] == ["ok", "partial", "no_metrics", "error", "no_metrics"]
    assert rows[4]["rollouts"] is None and "wrote no aggregate metrics" in rows[4]["error"]
    assert (rows[0]["rollouts"], rows[0]["mean_reward"], rows[1]["failures"]) == (4, 0.75, 1)
    assert rows[0]["overrides"] == "t=0.2 limit=4"
    doc = json.loads(json_path.read_text())
    assert len(doc["jobs"]) == 5 and doc["columns"] == columns
    with csv_path.open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["mean_reward"] for r in table] == ["0.75", "0.25", "", "", ""]
    text = format_table(rows, columns)
    assert len(text.splitlines()) == 6 and "reward" in text.splitlines()[0]


def test_records_of_other_files_are_ignored(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / JOB_RECORD).write_text("{not json")
    assert read_records(tmp_path) == []
    rows, columns, _ = summarize_sweep(tmp_path)
    assert rows == [] and format_table(rows, columns).count("\n") == 0
