"""NeMo Gym's ``group_level_metrics`` and ``median/*``: the statistics (table-driven), the exact
shape of one task's entry, order independence, and the streamed file equal to ``result()``.

Expected values are worked out by hand from NeMo Gym 0.4.0's rules (pandas describe per task:
NaN-skipping mean/max/min/median, sample std, std 0 for a one-row group)."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import orjson
import pytest

from gym_rollouts.engine.group_metrics import SAMPLE, describe, median
from gym_rollouts.engine.metrics import Aggregator, median_of_counts


def _row(task: int, rollout: int, reward, agent: str = "a", usage: dict | None = None, **extra) -> dict:
    return {"responses_create_params": {"input": f"q{task}"}, "agent_ref": {"name": agent}, "task_id": f"t{task}",
            "_ng_task_index": task, "_ng_rollout_index": rollout, "reward": reward,
            "response": {"usage": usage if usage is not None else
                         {"input_tokens": 10 + rollout, "output_tokens": 3, "total_tokens": 13 + rollout,
                          "input_tokens_details": {"cached_tokens": 0}}},
            "_gr": {"stop_reason": "answer", "model_calls": 1, "tool_calls": 0}, **extra}


@pytest.mark.parametrize(("rows", "expected"), [
    ([{"r": 1}], {"mean/r": 1.0, "max/r": 1.0, "min/r": 1.0, "median/r": 1.0, "std/r": 0.0}),
    ([{"r": 1, "x": 2.5}, {"r": 0}],  # x in one row only: no std for x; r has one
     {"mean/r": 0.5, "mean/x": 2.5, "max/r": 1.0, "max/x": 2.5, "min/r": 0.0, "min/x": 2.5,
      "median/r": 0.5, "median/x": 2.5, "std/r": math.sqrt(0.5)}),
    ([{"r": 1}, {"x": 4}],  # no field has two values: no std at all (no field is in every row)
     {"mean/r": 1.0, "mean/x": 4.0, "max/r": 1.0, "max/x": 4.0, "min/r": 1.0, "min/x": 4.0,
      "median/r": 1.0, "median/x": 4.0}),
    ([{"r": 1, "x": 4}, {"r": 3}],  # ... but r has two values: std/r only
     {"mean/r": 2.0, "mean/x": 4.0, "max/r": 3.0, "max/x": 4.0, "min/r": 1.0, "min/x": 4.0,
      "median/r": 2.0, "median/x": 4.0, "std/r": math.sqrt(2.0)}),
    ([{"r": 3}, {"r": 1}, {"r": 2}, {"r": 10}],
     {"mean/r": 4.0, "max/r": 10.0, "min/r": 1.0, "median/r": 2.5, "std/r": statistics.stdev([3, 1, 2, 10])}),
    ([], {}),
])
def test_describe_follows_nemo_gyms_rules(rows, expected) -> None:
    got = describe(rows)
    assert got == pytest.approx(expected) and list(got) == list(expected)  # stat-major key order
    assert all(type(v) is float for v in got.values())


@pytest.mark.parametrize("values", [[1], [2, 1], [0, 0, 1], [5, 1, 1, 5], [0.5, -2, 7, 7, 7, 3.25], [True, 0, 1]])
def test_medians_match_the_statistics_module(values) -> None:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    assert median_of_counts(counts, len(values)) == float(statistics.median(values)) == median(values)
    assert math.isnan(median_of_counts({}, 0))


def test_agent_medians_are_exact_and_counts_stay_small() -> None:
    agg = Aggregator()
    rng = random.Random(1)
    rewards = [rng.choice([0.0, 1.0]) for _ in range(2001)]
    tokens = [rng.randint(1, 300) for _ in range(2001)]
    for i, (reward, out) in enumerate(zip(rewards, tokens)):
        agg.add(_row(i, 0, reward, usage={"input_tokens": 7, "output_tokens": out, "total_tokens": 7 + out},
                     ok=bool(i % 3)), task_size=1)
    [entry] = agg.result(run={}, servers=[])
    m = entry["agent_metrics"]
    assert m["median/reward"] == statistics.median(rewards) and m["median/output_tokens"] == statistics.median(tokens)
    assert m["median/ok"] == 1.0 and m["min/ok"] == 0 and m["max/ok"] == 1  # booleans as 0/1
    assert m["median/model_calls"] == 1.0 and m["median/input_tokens"] == 7.0
    assert {k.split("/", 1)[1] for k in m if k.startswith("mean/")} == {
        k.split("/", 1)[1] for k in m if k.startswith("median/")}
    fields = agg.agents["a"].fields
    assert len(fields["reward"].counts) == 2 and len(fields["output_tokens"].counts) == len(set(tokens))


def test_the_entry_of_one_task_has_nemo_gyms_shape() -> None:
    agg = Aggregator()
    agg.add(_row(4, 2, 1.0, ok=True, score=float("nan"), note="text", difficulty=2), task_size=4)
    agg.add(_row(4, 0, 0.0, ok=False, score=0.5, difficulty=2,
                 usage={"input_tokens": 20, "output_tokens": 3, "total_tokens": 23, "cached": True}), task_size=4)
    agg.add_failure("a", 4, 4)  # rollout 1 failed for good
    assert agg.agents["a"].groups.open == {4: agg.agents["a"].groups.open[4]}  # rollout 3 still to come
    agg.add(_row(4, 3, None, difficulty=2), task_size=4)  # a row without a numeric reward still counts
    assert agg.agents["a"].groups.open == {}  # closed as soon as every rollout was accounted for
    [entry] = agg.result(run={}, servers=[])
    [group] = entry["group_level_metrics"]
    fields = ["reward", "ok", "score", "difficulty", "input_tokens", "output_tokens", "total_tokens", "cached"]
    values = {"reward": [0.0, 1.0], "ok": [0, 1], "score": [0.5], "difficulty": [2, 2, 2],
              "input_tokens": [20, 12, 13], "output_tokens": [3, 3, 3], "total_tokens": [23, 15, 16], "cached": [1]}
    stats = {}
    for stat, fn in (("mean", statistics.fmean), ("max", max), ("min", min), ("median", statistics.median)):
        stats.update({f"{stat}/{f}": float(fn(values[f])) for f in fields})
    stats.update({f"std/{f}": statistics.stdev(values[f]) for f in fields if len(values[f]) > 1})
    assert {k: v for k, v in group.items() if "/" in k} == pytest.approx(stats)
    assert set(group) == {"_ng_task_index", *stats, "sample", "num_rollouts", "expected_num_rollouts",
                          "missing_num_rollouts", "reward_profile_completion_pct", "rollout_infos"}
    assert group["_ng_task_index"] == 4 and group["sample"] == SAMPLE == {"agent_ref": {"name": "agent"}}
    assert (group["num_rollouts"], group["expected_num_rollouts"], group["missing_num_rollouts"]) == (3, 4, 1)
    assert group["reward_profile_completion_pct"] == 75.0
    assert group["rollout_infos"] == [
        {"rollout_id": "4:0", "_ng_task_index": 4, "_ng_rollout_index": 0, "reward": 0.0, "input_tokens": 20,
         "output_tokens": 3, "total_tokens": 23, "cached": 1, "difficulty": 2, "ok": 0, "score": 0.5},
        {"rollout_id": "4:2", "_ng_task_index": 4, "_ng_rollout_index": 2, "reward": 1.0, "input_tokens": 12,
         "output_tokens": 3, "total_tokens": 15, "difficulty": 2, "ok": 1},  # NaN score: missing, as read back
        {"rollout_id": "4:3", "_ng_task_index": 4, "_ng_rollout_index": 3, "reward": None, "input_tokens": 13,
         "output_tokens": 3, "total_tokens": 16, "difficulty": 2},
    ]
    assert entry["agent_metrics"]["mean/score"] == 0.5  # NaN skipped at the agent level too


def test_a_usage_field_wins_over_a_top_level_field_of_the_same_name_in_the_stats() -> None:
    agg = Aggregator()
    agg.add(_row(0, 0, 1.0, total_tokens=99, usage={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}), 1)
    [group] = agg.result(run={}, servers=[])[0]["group_level_metrics"]
    assert group["mean/total_tokens"] == 3.0  # NeMo Gym profiles result | usage
    assert group["rollout_infos"][0]["total_tokens"] == 99  # its rollout info takes the row's value


def test_tasks_without_rows_have_no_entry_and_one_rollout_tasks_get_std_zero() -> None:
    agg = Aggregator()
    agg.add_failure("a", 0, 2)
    agg.add_failure("a", 0, 2)  # every rollout of task 0 failed
    agg.add(_row(1, 0, 0.5), task_size=1)
    agg.add(_row(2, 0, 1.0), task_size=2)  # its other rollout failed in an earlier run: closed at the end
    agg.add_failure("b")  # an agent with failures only
    entries = {e["agent_ref"]["name"]: e for e in agg.result(run={}, servers=[])}
    groups = entries["a"]["group_level_metrics"]
    assert [g["_ng_task_index"] for g in groups] == [1, 2]
    assert groups[0]["std/reward"] == 0.0 and groups[0]["missing_num_rollouts"] == 0
    assert groups[1]["missing_num_rollouts"] == 1 and groups[1]["reward_profile_completion_pct"] == 50.0
    assert entries["b"]["group_level_metrics"] == [] and entries["b"]["agent_metrics"]["failures"] == 1


def _rows_of_a_run(tasks: int, repeats: int) -> tuple[list[dict], list[tuple[int, int]]]:
    rng = random.Random(9)
    rows, failed = [], []
    for t in range(tasks):
        for r in range(repeats):
            if rng.random() < 0.1:
                failed.append((t, r))
            else:
                rows.append(_row(t, r, rng.choice([0.0, 1.0]), agent=f"agent{t % 2}", score=rng.uniform(0, 1),
                                 usage={"input_tokens": rng.randint(1, 9), "output_tokens": 2, "total_tokens": 0}))
    return rows, failed


def _feed(agg: Aggregator, rows: list[dict], failed: list[tuple[int, int]], repeats: int, shuffle: int | None) -> None:
    events = [("row", r) for r in rows] + [("fail", k) for k in failed]
    if shuffle is not None:
        random.Random(shuffle).shuffle(events)
    for kind, item in events:
        if kind == "row":
            agg.add(item, task_size=repeats)
        else:
            agg.add_failure(f"agent{item[0] % 2}", item[0], repeats)


def test_completion_order_does_not_matter_and_the_spool_takes_the_closed_tasks(tmp_path: Path) -> None:
    rows, failed = _rows_of_a_run(tasks=8000, repeats=2)  # over the spool's window: runs on disk, merged
    in_order, shuffled = Aggregator(spool_dir=tmp_path), Aggregator(spool_dir=tmp_path)
    _feed(in_order, rows, failed, 2, None)
    _feed(shuffled, rows, failed, 2, shuffle=4)
    for agg in (in_order, shuffled):
        for agent in agg.agents.values():
            assert agent.groups.open == {} and agent.groups.spool.held <= agent.groups.spool.max_records
    assert shuffled.agents["agent0"].groups.spool.runs > 1  # the disorder made several sorted runs
    want, got = in_order.result(run={}, servers=[]), shuffled.result(run={}, servers=[])
    for w, g in zip(want, got):
        assert g["group_level_metrics"] == w["group_level_metrics"]
        assert g["agent_metrics"] == w["agent_metrics"]  # bit for bit: the field statistics ignore the order
    tasks = [g["_ng_task_index"] for e in got for g in e["group_level_metrics"]]
    assert tasks == sorted(t for t in {r["_ng_task_index"] for r in rows} if t % 2 == 0) + sorted(
        t for t in {r["_ng_task_index"] for r in rows} if t % 2 == 1)
    assert list(tmp_path.iterdir()) == []  # anonymous spool files


@pytest.mark.parametrize("agents", [0, 1, 2])
def test_the_streamed_file_is_result_indented_with_one_line_per_task(tmp_path: Path, agents: int) -> None:
    rows, failed = _rows_of_a_run(tasks=40, repeats=2)
    streamed, listed = Aggregator(spool_dir=tmp_path), Aggregator()
    for agg in (streamed, listed):
        _feed(agg, [r for r in rows if int(r["agent_ref"]["name"][-1]) < agents],
              [f for f in failed if f[0] % 2 < agents], 2, shuffle=1)
        if agents:
            agg.add_failure("only_failures")
    run, servers = {"elapsed_s": 2.0, "model": "m"}, [{"server": "s", "completed": 3}]
    path = tmp_path / "out_aggregate_metrics.json"
    streamed.write(path, run=run, servers=servers)
    written, want = path.read_bytes(), listed.result(run=run, servers=servers)
    assert orjson.loads(written) == want
    lines = written.splitlines()
    task_lines = [line for line in lines if line.startswith(b'      {"_ng_task_index":')]
    assert (len(task_lines) > 0) == (agents > 0)
    assert [orjson.loads(line.rstrip(b",")) for line in task_lines] == [
        g for e in want for g in e["group_level_metrics"]]  # one task entry per line
    rest = b"\n".join(line for line in lines if line not in task_lines).replace(b"[\n    ]", b"[]")
    assert rest == orjson.dumps([dict(e, group_level_metrics=[]) for e in want], option=orjson.OPT_INDENT_2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_aggregate_metrics.json"]  # no .partial left


@pytest.mark.parametrize("cut", [0, 1, 377, 1000])
def test_resume_feeding_gives_the_uninterrupted_document(tmp_path: Path, cut: int) -> None:
    """As session.py resumes: the earlier run's rows first (live=False), its final failures as
    prior failures (no task given: their tasks close at the end), then this run's events."""
    rows, failed = _rows_of_a_run(tasks=400, repeats=3)
    events = [("row", r) for r in rows] + [("fail", k) for k in failed]
    events.sort(key=lambda e: (e[1]["_ng_task_index"] if e[0] == "row" else e[1][0]) + random.Random(
        id(e)).uniform(0, 30))  # completion order: roughly by task
    straight, resumed = Aggregator(spool_dir=tmp_path), Aggregator(spool_dir=tmp_path)
    for kind, item in events:
        if kind == "row":
            straight.add(item, task_size=3)
        else:
            straight.add_failure(f"agent{item[0] % 2}", item[0], 3)
    for at, (kind, item) in enumerate(events):
        if kind == "row":
            resumed.add(item, task_size=3, live=at >= cut)
        elif at < cut:
            resumed.add_prior_failure(f"agent{item[0] % 2}")
        else:
            resumed.add_failure(f"agent{item[0] % 2}", item[0], 3)
    want, got = straight.result(run={}, servers=[]), resumed.result(run={}, servers=[])
    for w, g in zip(want, got):
        for key in ("rollouts_this_run", "rollouts_per_s", "output_tokens_per_s"):
            w["agent_metrics"].pop(key), g["agent_metrics"].pop(key)
        # pass@k sums per-task values in closing order: the last bits may differ
        for part in ("agent_metrics", "key_metrics"):
            assert g.pop(part) == pytest.approx(w.pop(part), rel=1e-12)
    assert got == want
    missing = [g["missing_num_rollouts"] for e in got for g in e["group_level_metrics"]]
    assert sum(missing) == len([f for f in failed if any(r["_ng_task_index"] == f[0] for r in rows)])
