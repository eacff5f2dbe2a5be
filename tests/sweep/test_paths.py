"""Per-job output naming (pure)."""

import pytest

from gym_rollouts.sweep.paths import job_output_path, with_job_number


@pytest.mark.parametrize("configured,job_num,expected", [
    (None, None, "/run/rollouts.jsonl"),             # single run, default
    (None, 3, "/run/rollouts.jsonl"),                # multirun default: the job's own sweep subdir
    ("", 2, "/run/rollouts.jsonl"),
    ("/data/out.jsonl", None, "/data/out.jsonl"),    # single run, explicit: as given
    ("/data/out.jsonl", 0, "/data/out_job0.jsonl"),  # multirun, explicit: job number in the name
    ("/data/out.jsonl", 12, "/data/out_job12.jsonl"),
    ("/data/out", 1, "/data/out_job1"),
    ("rel/x.y.jsonl", 4, "rel/x.y_job4.jsonl"),
])
def test_job_output_path(configured, job_num, expected):
    assert job_output_path(configured, output_dir="/run", job_num=job_num) == expected


def test_jobs_of_one_sweep_never_share_a_file():
    names = {with_job_number("/d/out.jsonl", n) for n in range(50)}
    assert len(names) == 50
