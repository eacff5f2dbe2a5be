"""The sweep verdict (sweep/verdict.py): table-driven, pure."""

import pytest

from gym_rollouts.sweep.verdict import BASIC_SWEEPER, LOST, expected_job_count, job_code, sweep_verdict


def rec(job, status="COMPLETED", code=0, metrics=True, **extra):
    return {"job": job, "status": status, "exit_code": code, "metrics_written": metrics,
            "overrides": [f"shard_index={job}"], **extra}


@pytest.mark.parametrize("record, code", [
    (rec(0), 0),
    (rec(0, code=3), 3),
    (rec(0, code=2, metrics=False), 2),
    (rec(0, code=130, metrics=False), 130),
    (rec(0, status=LOST, code=None, metrics=False), 130),
    (rec(0, status="FAILED", code=None), 130),
    (rec(0, code=None), 0),  # a record of an older version: metrics written = it finished
    (rec(0, code=None, metrics=False), 130),
    (rec(0, code=True), 0),  # a bool is not an exit code
])
def test_job_code(record, code):
    assert job_code(record) == code


@pytest.mark.parametrize("records, expected, code, n_problems", [
    ([rec(0), rec(1)], 2, 0, 0),
    ([rec(0), rec(1, code=3)], 2, 3, 1),
    ([rec(0, code=3), rec(1, status=LOST, code=None, error="UncompletedJobError: cancelled")], 2, 130, 2),
    ([rec(0)], 2, 130, 1),  # job 1 left no record
    ([rec(0)], None, 0, 0),  # unknown job count: only the records judge
    ([], 0, 0, 0),
    ([rec(0, code=2, metrics=False), rec(1, code=2, metrics=False)], 2, 2, 2),
])
def test_sweep_verdict(records, expected, code, n_problems):
    verdict = sweep_verdict(records, expected)
    assert (verdict.exit_code, len(verdict.problems)) == (code, n_problems)


def test_problem_lines_name_the_job_its_overrides_and_the_error():
    verdict = sweep_verdict([rec(0), rec(2, status=LOST, code=None, error="UncompletedJobError: CANCELLED")], 3)
    assert verdict.problems == (  # the records' problems by job, then the jobs without a record
        "job 2 (shard_index=2) did not finish (cancelled, killed, or its node went away): "
        "UncompletedJobError: CANCELLED",
        "job 1 left no record: it did not finish (cancelled or killed before its end)",
    )


@pytest.mark.parametrize("target, overrides, params, count", [
    (BASIC_SWEEPER, ["shard_index=0,1,2,3", "num_shards=4"], None, 4),
    (BASIC_SWEEPER, ["a=1,2", "b=x,y,z"], None, 6),
    (BASIC_SWEEPER, ["shard_index=range(0,8)"], None, 8),
    (BASIC_SWEEPER, ["limit=4"], {"num_repeats": "1,2"}, 2),
    (BASIC_SWEEPER, ["limit=4"], None, 1),
    ("hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", ["a=1,2"], None, None),
])
def test_expected_job_count(target, overrides, params, count):
    assert expected_job_count(target, overrides, params) == count
