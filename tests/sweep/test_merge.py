"""Merging shard outputs: order, integrity checks, recomputed metrics (files written by hand)."""

import json

import pytest

from gym_rollouts.cli.merge import run as merge_main
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.sweep.merge import MergeError, discover, plan_merge, write_merge


def _row(task, rollout, reward=1.0, agent="a"):
    return {"responses_create_params": {"input": f"q{task}"}, "agent_ref": {"name": agent},
            "_ng_task_index": task, "_ng_rollout_index": rollout, "reward": reward,
            "response": {"usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}},
            "_gr": {"stop_reason": "completed"}}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _shard(tmp_path, name, tasks, repeats=2, done=None, failed=(), skipped_lines=(), shard=(0, 1), metrics=None,
           sha256="ab12", served_model="m", limit=None):
    """A shard output: every (task, rollout) materialized; rows for ``done`` (default all) in
    reverse completion order; failure rows for ``failed``; its run manifest (``shard`` = index, count)."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    paths = OutputPaths(folder / "rollouts.jsonl")
    keys = [(t, r) for t in tasks for r in range(repeats)]
    done = keys if done is None else done
    materialized = [{k: v for k, v in _row(t, r).items() if k in ("responses_create_params", "agent_ref",
                                                                    "_ng_task_index", "_ng_rollout_index")}
                    for t, r in keys]
    _write(paths.materialized_inputs, materialized)
    _write(paths.rows, [_row(t, r, reward=float(r == 0)) for t, r in reversed(done)])
    failures = [{"_ng_task_index": t, "_ng_rollout_index": r, "attempt": 1, "error_class": "X"} for t, r in failed]
    failures += [{"_ng_task_index": None, "_ng_rollout_index": None, "error_class": "InputError", "input_line": n}
                 for n in skipped_lines]
    _write(paths.failures, failures)
    paths.aggregate_metrics.write_text(json.dumps(metrics if metrics is not None else [
        {"agent_ref": {"name": "a"}, "agent_metrics": {"count": len(done)},
         "run": {"rollouts": len(done), "failures": 0, "rollouts_per_s": 2.0, "output_tokens_per_s": 10.0,
                 "elapsed_s": 1.5, "model": "m"}}]))
    paths.manifest.write_text(json.dumps({
        "format": 1, "input": {"path": "in.jsonl", "sha256": sha256, "rows": 10},
        "settings": {"limit": limit, "num_repeats": repeats, "shard": {"index": shard[0], "count": shard[1]}},
        "served_model": served_model}))
    return paths


def _keys(path):
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in map(json.loads, path.read_text().splitlines())]


def test_merge_sorts_by_task_and_rollout_and_recomputes_metrics(tmp_path):
    _shard(tmp_path, "s0", [0, 2, 4], shard=(0, 2))
    _shard(tmp_path, "s1", [1, 3], shard=(1, 2), metrics={"summary": {"rollouts": 4, "rollouts_per_s": 1.0,
                                                                     "elapsed_s": 3.0}})
    out = OutputPaths(tmp_path / "merged" / "all.jsonl")
    entries = write_merge(plan_merge(discover([tmp_path / "s0", tmp_path / "s1"])), out)
    expected = [(t, r) for t in range(5) for r in range(2)]
    assert _keys(out.rows) == expected and _keys(out.materialized_inputs) == expected
    (entry,) = entries
    assert entry["agent_metrics"]["count"] == 10
    assert entry["agent_metrics"]["mean/reward"] == 0.5
    assert entry["agent_metrics"]["pass@1/reward"] == 50.0 and entry["agent_metrics"]["pass@2/reward"] == 100.0
    assert entry["run"]["rollouts_per_s"] == 3.0 and entry["run"]["elapsed_s"] == 3.0  # sum / longest
    assert entry["run"]["model"] == "m" and len(entry["run"]["merged_from"]) == 2
    assert entry["run"]["mean_reward"] == 0.5 and entry["run"]["failed_attempts_this_run"] == 0
    assert json.loads(out.aggregate_metrics.read_text()) == entries
    assert not out.manifest.exists()


def test_failed_rollouts_are_carried_and_counted(tmp_path):
    _shard(tmp_path, "s0", [0, 1], done=[(0, 0), (0, 1), (1, 1)], failed=[(1, 0), (0, 1)])  # (0,1) retried OK
    out = tmp_path / "all.jsonl"
    assert merge_main([str(tmp_path / "s0"), "-o", str(out)]) == 3
    metrics = json.loads(OutputPaths(out).aggregate_metrics.read_text())
    assert metrics[0]["run"]["failures"] == 1 and metrics[0]["agent_metrics"]["failures"] == 1
    assert metrics[0]["run"]["failed_attempts_this_run"] == 2  # the key a single run's metrics use
    assert len(OutputPaths(out).failures.read_text().splitlines()) == 2


@pytest.mark.parametrize("case,message", [
    ("overlap", "is in two shards"),
    ("duplicate_row", "has two rows"),
    ("unexpected_row", "was not in this shard's inputs"),
    ("missing", "neither a row nor a failure record"),
    ("missing_shard", "are in no shard"),
    ("shard_settings", "do not cover 0..2"),
    ("twice", r"shard indices \[0, 0, 1, 2\] do not cover"),
    ("num_shards", "different num_shards"),
    ("other_input", "not a shard of the same run.*the input rows changed"),
    ("other_model", "not a shard of the same run.*served_model: 'm' -> 'other'"),
    ("other_settings", "not a shard of the same run.*limit: None -> 5"),
    ("no_manifest", "no usable run manifest"),
])
def test_shards_that_do_not_add_up_are_refused(tmp_path, case, message):
    a = _shard(tmp_path, "s0", [0, 3], shard=(0, 3))
    b = _shard(tmp_path, "s1", [1, 4], shard=(1, 3))
    inputs = [a, b, _shard(tmp_path, "s2", [2], shard=(2, 3))]
    if case == "overlap":
        inputs.append(_shard(tmp_path, "again", [3]))
    elif case == "duplicate_row":
        with a.rows.open("a") as fh:
            fh.write(json.dumps(_row(0, 0)) + "\n")
    elif case == "unexpected_row":
        with a.rows.open("a") as fh:
            fh.write(json.dumps(_row(1, 1)) + "\n")
    elif case == "missing":
        _write(b.rows, [_row(1, 0)])
    elif case == "missing_shard":
        inputs = [a, _shard(tmp_path, "s2b", [2], shard=(2, 3))]
    elif case == "shard_settings":
        inputs = [a, b]
    elif case == "twice":
        inputs.append(_shard(tmp_path, "s0b", [5], shard=(0, 3)))
    elif case == "num_shards":
        inputs[2] = _shard(tmp_path, "s2b", [2], shard=(2, 4))
    elif case == "other_input":
        inputs[2] = _shard(tmp_path, "s2b", [2], shard=(2, 3), sha256="cd34")
    elif case == "other_model":
        inputs[2] = _shard(tmp_path, "s2b", [2], shard=(2, 3), served_model="other")
    elif case == "other_settings":
        inputs[2] = _shard(tmp_path, "s2b", [2], shard=(2, 3), limit=5)
    elif case == "no_manifest":
        b.manifest.unlink()
    out = OutputPaths(tmp_path / "out" / "all.jsonl")
    with pytest.raises(MergeError, match=message):
        write_merge(plan_merge(inputs), out)
    assert not out.rows.parent.exists() or not any(out.rows.parent.iterdir())


def test_gaps_explained_by_skipped_bad_rows_are_accepted(tmp_path):
    _shard(tmp_path, "s0", [0, 2], skipped_lines=[2])  # task 1 was a bad input line
    plan = plan_merge(discover([tmp_path]))
    assert plan.problems == []


def test_non_contiguous_task_indices_of_complete_shards_are_accepted(tmp_path):
    # inputs may carry their own _ng_task_index (e.g. a subset of a bigger set): no gap is a missing shard
    _shard(tmp_path, "s0", [10, 30], shard=(0, 2))
    _shard(tmp_path, "s1", [20, 40], shard=(1, 2))
    plan = plan_merge(discover([tmp_path]))
    assert plan.problems == []
    assert sorted({t for t, _ in plan.expected}) == [10, 20, 30, 40]


def test_cli_refuses_an_existing_output_and_empty_inputs(tmp_path, capsys):
    _shard(tmp_path, "s0", [0])
    out = tmp_path / "all.jsonl"
    assert merge_main([str(tmp_path / "s0"), "-o", str(out)]) == 0
    assert merge_main([str(tmp_path / "s0"), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert merge_main([str(tmp_path / "empty"), "-o", str(tmp_path / "x.jsonl")]) == 2


def test_discover_skips_the_merge_output_inside_the_searched_dir(tmp_path):
    _shard(tmp_path, "s0", [0])
    out = tmp_path / "all.jsonl"
    assert merge_main([str(tmp_path), "-o", str(out)]) == 0
    assert merge_main([str(tmp_path), "-o", str(out), "--overwrite"]) == 0  # not merged with itself
    assert [p.rows.name for p in discover([tmp_path], exclude=out)] == ["rollouts.jsonl"]
