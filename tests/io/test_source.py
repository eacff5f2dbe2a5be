"""The streaming task source: validation with line numbers, fingerprint, aabbcc expansion."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gym_rollouts.errors import InputError
from gym_rollouts.io.source import iter_jobs, materialized_row, raise_if_problems, row_problem, scan_file


def _row(text: str = "hi", **extra) -> dict:
    return {"responses_create_params": {"input": text}, **extra}


def _write(path: Path, lines: list) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (_row(), None),
        ({"responses_create_params": {"input": [{"role": "user", "content": "x"}]}}, None),
        ([], "must be a JSON object"),
        ({}, "missing 'responses_create_params'"),
        ({"responses_create_params": "x"}, "must be an object"),
        ({"responses_create_params": {}}, "missing 'responses_create_params.input'"),
        ({"responses_create_params": {"input": 3}}, "must be a string or a list"),
        ({"responses_create_params": {"input": ["x"]}}, "items must be objects"),
        ({"responses_create_params": {"input": "x", "tools": {}}}, "tools' must be a list"),
        (_row(_ng_task_index="1"), "'_ng_task_index' must be an integer"),
        (_row(_ng_rollout_index=True), "'_ng_rollout_index' must be an integer"),
        (_row(agent_ref="a"), "'agent_ref' must be an object"),
    ],
)
def test_row_problem(row, problem) -> None:
    found = row_problem(row)
    assert (found is None) if problem is None else (problem in found)


def test_scan_lists_every_bad_line_with_its_number(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row(), b"{not json", _row(), b"", {"x": 1}, _row(), b"[1]"])
    scan = scan_file(path)
    assert (scan.rows, scan.good_rows, scan.problem_count) == (6, 3, 3)
    assert [p.split(": ", 1)[0] for p in scan.problems] == [f"{path}:2", f"{path}:5", f"{path}:7"]
    with pytest.raises(InputError) as err:
        raise_if_problems(scan)
    text = str(err.value)
    assert "3 bad input line(s)" in text and f"{path}:5: missing 'responses_create_params'" in text


def test_fingerprint_covers_the_used_rows_only(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [_row("1"), _row("2"), _row("3")])
    b = _write(tmp_path / "b.jsonl", [_row("1"), _row("2"), _row("changed")])
    assert scan_file(a, 2).sha256 == scan_file(b, 2).sha256
    assert scan_file(a).sha256 != scan_file(b).sha256


def test_aabbcc_layout_limit_and_seq(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a"), _row("b"), _row("c")])
    jobs = list(iter_jobs(path, limit=2, num_repeats=3, agent_name="ag"))
    assert [(j.seq, j.task_index, j.rollout_index, j.task_size) for j in jobs] == [
        (0, 0, 0, 3), (1, 0, 1, 3), (2, 0, 2, 3), (3, 1, 0, 3), (4, 1, 1, 3), (5, 1, 2, 3)]
    assert jobs[0].row is jobs[2].row  # repeats share one materialized row
    assert jobs[0].row["agent_ref"] == {"name": "ag"}


def test_overrides_are_merged_and_the_source_row_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [{"responses_create_params": {"input": "q", "temperature": 0.1},
                                            "agent_ref": {"name": "theirs"}}])
    job = next(iter_jobs(path, limit=None, num_repeats=1, overrides={"temperature": 0.7}, agent_name="ours"))
    assert job.row["responses_create_params"] == {"input": "q", "temperature": 0.7}
    assert job.row["agent_ref"] == {"name": "theirs"}
    assert materialized_row(job)["_ng_task_index"] == 0


def test_bad_rows_are_reported_and_keep_their_position(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a"), b"oops", _row("c")])
    seen = []
    jobs = list(iter_jobs(path, limit=None, num_repeats=1, on_problem=lambda line, msg: seen.append(line)))
    assert seen == [2]
    assert [(j.seq, j.task_index, j.line_no) for j in jobs] == [(0, 0, 1), (1, 2, 3)]


def test_materialized_inputs_fed_back_reproduce_the_indices(tmp_path: Path) -> None:
    """A materialized-inputs file as input (num_repeats=1) gives the same task/rollout indices:
    consecutive rows sharing ``_ng_task_index`` form one task, as NeMo Gym assigns them."""
    src = _write(tmp_path / "in.jsonl", [_row("a"), _row("b")])
    first = [materialized_row(j) for j in iter_jobs(src, limit=None, num_repeats=3)]
    again = _write(tmp_path / "mat.jsonl", first)
    jobs = list(iter_jobs(again, limit=None, num_repeats=1))
    assert [(j.task_index, j.rollout_index, j.task_size) for j in jobs] == [
        (r["_ng_task_index"], r["_ng_rollout_index"], 3) for r in first]


def test_the_scan_counts_the_rows_a_shard_owns_as_the_job_stream_does(tmp_path: Path) -> None:
    lines = [_row("a"), b"oops", _row("c"), _row("d", _ng_task_index=7), _row("e", _ng_task_index=7),
             _row("f", _ng_task_index=7), b"[]", _row("h"), _row("i", _ng_task_index=4)]
    path = _write(tmp_path / "in.jsonl", lines)
    for count in (1, 2, 3):
        for index in range(count):
            keep = lambda task, i=index, n=count: task % n == i  # noqa: E731
            scan = scan_file(path, keep=keep)
            jobs = list(iter_jobs(path, limit=None, num_repeats=1, keep=keep))
            assert scan.owned_rows == len(jobs), (index, count)
    assert scan_file(path).owned_rows == scan_file(path).good_rows == 7


def test_a_task_group_too_large_is_refused_by_the_scan(tmp_path: Path, monkeypatch) -> None:
    import gym_rollouts.io.source as source

    monkeypatch.setattr(source, "MAX_TASK_GROUP", 3)
    ok = _write(tmp_path / "ok.jsonl", [_row(_ng_task_index=1)] * 3 + [_row(_ng_task_index=2)] * 3)
    assert scan_file(ok).owned_rows == 6
    big = _write(tmp_path / "big.jsonl", [_row(_ng_task_index=1)] * 4)
    with pytest.raises(InputError, match="more than 3 consecutive rows"):
        scan_file(big)


def test_only_the_owning_shard_reports_a_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a"), b"oops", _row("c"), b"{}"])
    seen: dict[int, list[int]] = {0: [], 1: []}
    for shard in (0, 1):
        list(iter_jobs(path, limit=None, num_repeats=1, keep=lambda task, s=shard: task % 2 == s,
                       on_problem=lambda line, msg, s=shard: seen[s].append(line)))
    assert seen == {0: [], 1: [2, 4]}
