"""Failure isolation and bad input, end to end: ``collect`` as a subprocess, a resource that
raises on some rows, malformed input files."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine_helpers import read_rows, served_requests, write_tasks

RAISING = ("resource.cls=raising_resource:RaisingResource", "resource.name=raising", "num_samples_in_parallel=8")
EXPLODE = frozenset({1, 4, 5})


def test_a_raising_resource_fails_only_its_rows(tmp_path: Path, collect) -> None:
    write_tasks(tmp_path / "in.jsonl", 10, EXPLODE)
    run = collect(*RAISING, "max_attempts=2")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "3 rollouts FAILED" in run.stdout and str(tmp_path / "out_failures.jsonl") in run.stdout
    rows = read_rows(tmp_path / "out.jsonl")
    assert sorted(r["_ng_task_index"] for r in rows) == [i for i in range(10) if i not in EXPLODE]
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted((f["_ng_task_index"], f["attempt"]) for f in failures) == [
        (i, a) for i in sorted(EXPLODE) for a in (1, 2)]
    assert all(f["error_class"] == "ResourceError" and "boom on t" in f["message"] for f in failures)
    [entry] = orjson.loads((tmp_path / "out_aggregate_metrics.json").read_bytes())
    assert entry["agent_metrics"]["failures"] == 3 and entry["agent_metrics"]["count"] == 7


def test_attempts_are_counted_across_runs(tmp_path: Path, collect) -> None:
    """The failures file is the attempt ledger: resume retries a rollout only while its recorded
    attempts are below max_attempts."""
    write_tasks(tmp_path / "in.jsonl", 6, EXPLODE)
    first = collect(*RAISING, "max_attempts=1")
    assert first.returncode == 3
    assert len(read_rows(tmp_path / "out_failures.jsonl")) == 3
    second = collect(*RAISING, "max_attempts=2", "resume_from_cache=true")
    assert second.returncode == 3, second.stdout + second.stderr
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted((f["_ng_task_index"], f["attempt"]) for f in failures) == [
        (i, a) for i in sorted(EXPLODE) for a in (1, 2)]
    third = collect(*RAISING, "max_attempts=2", "resume_from_cache=true")
    assert third.returncode == 3 and "this run: 0 rollouts" in third.stdout
    assert len(read_rows(tmp_path / "out_failures.jsonl")) == 6
    assert len(read_rows(tmp_path / "out.jsonl")) == 3
    [entry] = orjson.loads((tmp_path / "out_aggregate_metrics.json").read_bytes())
    assert entry["agent_metrics"]["failures"] == 3 and entry["agent_metrics"]["count"] == 3


def test_overwrite_starts_clean_without_stale_failures(tmp_path: Path, collect) -> None:
    write_tasks(tmp_path / "in.jsonl", 6, EXPLODE)
    assert collect(*RAISING, "max_attempts=1").returncode == 3
    write_tasks(tmp_path / "in.jsonl", 6)
    clean = collect(*RAISING, "overwrite=true")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert read_rows(tmp_path / "out_failures.jsonl") == []
    assert len(read_rows(tmp_path / "out.jsonl")) == 6


def _bad_input(path: Path) -> None:
    lines = [orjson.dumps({"responses_create_params": {"input": "What is 1 + 1?"}, "expected_answer": "2"}),
             b"{not json", orjson.dumps({"responses_create_params": {"input": "What is 2 + 2?"}, "expected_answer": "4"}),
             orjson.dumps({"prompt": "no responses_create_params"}), b"",
             orjson.dumps({"responses_create_params": {"input": 42}})]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_malformed_lines_are_listed_and_nothing_is_sent(tmp_path: Path, collect, slow_server) -> None:
    _bad_input(tmp_path / "in.jsonl")
    before = served_requests(slow_server)
    run = collect()
    assert run.returncode == 2, run.stdout + run.stderr
    src = tmp_path / "in.jsonl"
    assert "3 bad input line(s)" in run.stderr
    for line_no in (2, 4, 6):
        assert f"{src}:{line_no}:" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("out.*")) + list(tmp_path.glob("out_*"))  # nothing was started
    assert served_requests(slow_server) == before


def test_skip_mode_records_bad_lines_and_runs_the_rest(tmp_path: Path, collect, slow_server) -> None:
    _bad_input(tmp_path / "in.jsonl")
    before = served_requests(slow_server)
    run = collect("on_bad_input=skip")
    assert run.returncode == 0, run.stdout + run.stderr
    assert served_requests(slow_server) == before + 2
    assert "3 bad input rows skipped" in run.stdout
    rows = read_rows(tmp_path / "out.jsonl")
    assert sorted(r["_ng_task_index"] for r in rows) == [0, 2]  # bad rows keep their position
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted(f["input_line"] for f in failures) == [2, 4, 6]
    again = collect("on_bad_input=skip", "resume_from_cache=true")
    assert again.returncode == 0
    assert len(read_rows(tmp_path / "out_failures.jsonl")) == 3  # not recorded twice
