"""Streaming aggregate metrics: per-field statistics, pass@k over repeats, per agent."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from gym_rollouts.engine.metrics import Aggregator, FieldStats, pass_at_k


def _row(task: int, rollout: int, reward: float, agent: str = "a", **extra) -> dict:
    return {"_ng_task_index": task, "_ng_rollout_index": rollout, "reward": reward, "agent_ref": {"name": agent},
            "response": {"usage": {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}},
            "_gr": {"stop_reason": "answer", "model_calls": 1, "tool_calls": 0}, **extra}


def test_field_stats_match_the_statistics_module() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-5, 5) for _ in range(500)] + [1, 1, 2.5, 2.5, 2.5, True - 1]  # repeats, ints
    acc = FieldStats()
    for v in values:
        acc.add(v)
    assert acc.n == len(values) and acc.lo == min(values) and acc.hi == max(values)
    assert acc.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert acc.std() == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert acc.median() == statistics.median(values)


def test_field_stats_do_not_depend_on_the_order() -> None:
    """Bit for bit the same whatever order the rows came in (a resumed run reads its rows back in
    file order, an uninterrupted one saw them in completion order)."""
    rng = random.Random(11)
    values = [rng.choice([0.1, 0.2, 0.7, 1e9, 3]) for _ in range(300)] + [rng.random() for _ in range(50)]
    results = set()
    for seed in range(5):
        shuffled = values[:]
        random.Random(seed).shuffle(shuffled)
        acc = FieldStats()
        for v in shuffled:
            acc.add(v)
        results.add((acc.n, acc.mean, acc.std(), acc.lo, acc.hi, acc.median()))
    assert len(results) == 1


def test_field_stats_of_one_and_of_none() -> None:
    acc = FieldStats()
    assert (acc.n, acc.mean, acc.std(), acc.lo, acc.hi) == (0, 0.0, 0.0, math.inf, -math.inf)
    acc.add(4)
    assert (acc.n, acc.mean, acc.std(), acc.lo, acc.hi, acc.median()) == (1, 4.0, 0.0, 4, 4, 4.0)


@pytest.mark.parametrize(
    ("rewards", "k", "expected"),
    [
        ([1, 0, 0, 0], 1, 0.25),
        ([1, 0, 0, 0], 2, 1 - math.comb(3, 2) / math.comb(4, 2)),
        ([1, 0, 0, 0], 4, 1.0),
        ([0, 0, 0], 2, 0.0),
        ([1, 1], 1, 1.0),
        ([0.2, 0.9, 0.5], 1, 0.2),   # continuous: max over the first k
        ([0.2, 0.9, 0.5], 2, 0.9),
    ],
)
def test_pass_at_k(rewards, k, expected) -> None:
    assert pass_at_k([float(r) for r in rewards], k) == pytest.approx(expected)


def test_aggregate_in_any_completion_order() -> None:
    rows = [_row(t, r, float((t + r) % 2), score=t) for t in range(5) for r in range(4)]
    random.Random(3).shuffle(rows)
    agg = Aggregator()
    for row in rows:
        agg.add(row, task_size=4)
    assert sum(len(a.open_tasks) for a in agg.agents.values()) == 0  # every task closed as it completed
    agg.add_failure("a")
    [entry] = agg.result(run={"elapsed_s": 2.0}, servers=[{"server": "s"}])
    m = entry["agent_metrics"]
    assert entry["agent_ref"] == {"name": "a"} and entry["servers"] == [{"server": "s"}]
    assert m["count"] == 20 and m["failures"] == 1
    assert m["mean/reward"] == pytest.approx(0.5) and m["min/reward"] == 0.0 and m["max/reward"] == 1.0
    assert m["median/reward"] == 0.5 and m["median/score"] == 2.0 and m["median/input_tokens"] == 10.0
    assert {k for k in m if k.startswith("median/")} == {k.replace("mean/", "median/") for k in m
                                                         if k.startswith("mean/")}
    assert [g["_ng_task_index"] for g in entry["group_level_metrics"]] == [0, 1, 2, 3, 4]
    assert entry["group_level_metrics"][1]["mean/score"] == 1.0 and entry["group_level_metrics"][1]["num_rollouts"] == 4
    assert m["mean/score"] == pytest.approx(2.0) and m["std/score"] == pytest.approx(statistics.stdev(
        [t for t in range(5) for _ in range(4)]))
    assert m["total/output_tokens"] == 60 and m["mean/input_tokens"] == 10
    assert m["pass@1/reward"] == pytest.approx(50.0) and m["pass@2/reward"] == pytest.approx(100 * (1 - 1 / 6))
    assert m["pass@1[avg-of-4]/reward"] == pytest.approx(50.0)
    assert m["stops/answer"] == 20 and m["rollouts_per_s"] == pytest.approx(10.0)
    assert "_ng_task_index" not in str([k for k in m if k.startswith("mean/")])
    assert set(entry["key_metrics"]) <= {k for k in m if k.startswith(("mean/", "pass@"))}


def test_open_tasks_are_closed_at_the_end_and_agents_kept_apart() -> None:
    agg = Aggregator()
    agg.add(_row(0, 0, 1.0, agent="x"), task_size=3)  # its other rollouts failed
    agg.add(_row(0, 0, 0.0, agent="y"), task_size=1)
    agg.add(_row(1, 0, 1.0, agent="y"), task_size=1, live=False)  # from an earlier run
    by_agent = {e["agent_ref"]["name"]: e["agent_metrics"] for e in agg.result(run={"elapsed_s": 1.0}, servers=[])}
    assert by_agent["x"]["pass@1/reward"] == 100.0 and "pass@2/reward" not in by_agent["x"]
    assert by_agent["y"]["count"] == 2 and by_agent["y"]["rollouts_this_run"] == 1


def test_a_task_with_failed_rollouts_closes_when_every_rollout_is_accounted_for() -> None:
    streamed, at_end = Aggregator(), Aggregator()
    for task in range(50):  # rollout 1 of every task fails for good, before or after the others finish
        if task % 2:
            streamed.add_failure("a", task, 3)
        streamed.add(_row(task, 0, float(task % 3 == 0)), task_size=3)
        streamed.add(_row(task, 2, 1.0), task_size=3)
        if not task % 2:
            streamed.add_failure("a", task, 3)
        at_end.add(_row(task, 0, float(task % 3 == 0)), task_size=3)
        at_end.add(_row(task, 2, 1.0), task_size=3)
        at_end.add_failure("a")
    agent = streamed.agents["a"]
    assert agent.open_tasks == {} and agent.open_failures == {}  # closed as they completed
    assert len(at_end.agents["a"].open_tasks) == 50
    [got] = streamed.result(run={"elapsed_s": 1.0}, servers=[])
    [want] = at_end.result(run={"elapsed_s": 1.0}, servers=[])
    assert got["agent_metrics"] == want["agent_metrics"] and got["agent_metrics"]["failures"] == 50
    only_failed = Aggregator()
    only_failed.add_failure("b", 7, 2)
    only_failed.add_failure("b", 7, 2)
    assert only_failed.agents["b"].open_failures == {}
    assert only_failed.result(run={}, servers=[])[0]["agent_metrics"]["failures"] == 2
