"""The per-row bookkeeping's fast paths against the plain code they replaced (kept here as the
reference): group entries (one-rollout shortcut, stat values) and the spool's full-window push.
Random rows with the odd cases (usage fields named like row fields, booleans,
NaN/inf, -0.0, missing or non-numeric rewards); the serialized bytes must be the same."""

from __future__ import annotations

import heapq
import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from gym_rollouts.engine import group_metrics as gm
from gym_rollouts.engine.metrics import Aggregator
from gym_rollouts.engine.spool import SortedSpool
from gym_rollouts.records import ROLLOUT_INDEX, TASK_INDEX

# --- the reference: group_metrics' stat values and entry before the one-rollout shortcut ---


def ref_stat_values(rollout: gm.Rollout) -> dict[str, float]:
    _, info, override = rollout
    values = {k: v for k, v in info.items() if k not in gm._INFO_SKIPPED and k != "rollout_id"}
    reward = gm._finite(info.get("reward"))
    if reward is not None:
        values = {"reward": reward, **values}
    if override:
        values.update(override)
    return values


def ref_describe_one(values: dict[str, float]) -> dict[str, float]:
    layout = tuple(f"{stat}/{name}" for stat in gm.STATS for name in values)
    floats = [float(x) for x in values.values()]
    return dict(zip(layout, floats * 4 + [0.0] * len(floats)))


def ref_group_entry(task: int, rollouts: list[gm.Rollout], expected: int) -> dict[str, Any]:
    if len(rollouts) > 1:
        rollouts = sorted(rollouts, key=lambda r: r[0])
    rows = [ref_stat_values(r) for r in rollouts]
    stats = ref_describe_one(rows[0]) if len(rows) == 1 else gm.describe(rows)
    entry: dict[str, Any] = {TASK_INDEX: task, **stats}
    n = len(rollouts)
    entry["sample"] = gm.SAMPLE
    entry["num_rollouts"] = n
    entry["expected_num_rollouts"] = expected
    entry["missing_num_rollouts"] = expected - n
    entry["reward_profile_completion_pct"] = 100.0 if expected == 0 else 100.0 * n / expected
    entry["rollout_infos"] = [info for _, info, _ in rollouts]
    return entry


ODD_VALUES = [0, 1, -3, 7, 2.5, -0.0, 0.0, True, False, None, "x", math.nan, math.inf, -math.inf, [1], {"a": 1}]
ODD_NAMES = ["reward", TASK_INDEX, ROLLOUT_INDEX, "rollout_id", "response", "task_id", "ok", "score",
             "input_tokens", "output_tokens", "total_tokens"]


def random_row(rng: random.Random, task: int, rollout: int) -> dict[str, Any]:
    usage: Any = {"input_tokens": rng.randint(1, 2000), "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": rng.randint(1, 300), "total_tokens": rng.randint(1, 3000)}
    row: dict[str, Any] = {"responses_create_params": {"input": "q"}, "agent_ref": {"name": "a"},
                           "task_id": task, TASK_INDEX: task, ROLLOUT_INDEX: rollout,
                           "reward": rng.choice([1.0, 0.0, 1, 0, 0.5, True])}
    if rng.random() < 0.3:  # the odd cases
        for _ in range(rng.randint(1, 3)):
            row[rng.choice(ODD_NAMES[5:] + ["reward", "rollout_id"])] = rng.choice(ODD_VALUES)
        for _ in range(rng.randint(0, 3)):
            usage[rng.choice(ODD_NAMES)] = rng.choice(ODD_VALUES)
        if rng.random() < 0.1:
            del row["reward"]
        if rng.random() < 0.05:
            usage = rng.choice([None, "x", []])
    row["response"] = {"usage": usage}
    return row


def numeric_of(row: dict[str, Any]) -> dict[str, Any]:
    """The engine's numeric fields of a row (AgentAggregate.add's rule)."""
    out = {}
    for name, value in row.items():
        if value.__class__ is float and value - value != 0.0:
            continue
        if value.__class__ is bool:
            value = 1 if value else 0
        elif value.__class__ not in (int, float):
            continue
        out[name] = value
    return out


def test_group_entries_are_byte_identical_to_the_reference() -> None:
    rng = random.Random(14)
    keys: dict[Any, tuple[str, ...]] = {}  # shared, as GroupLevel shares it
    for task in range(3000):
        size = rng.choice([1, 1, 1, 2, 3, 5])
        rows = [random_row(rng, task, r) for r in range(size)]
        rng.shuffle(rows)
        rollouts = [gm.rollout_of(r, numeric_of(r), r["response"]["usage"]) for r in rows]
        for r in rollouts:
            assert gm.stat_values(r) == ref_stat_values(r) and list(gm.stat_values(r)) == list(ref_stat_values(r))
        expected = size + rng.choice([0, 0, 1])
        got = orjson.dumps(gm.group_entry(task, rollouts, expected, keys))
        assert got == orjson.dumps(ref_group_entry(task, rollouts, expected)), rows
        if size == 1:
            assert gm.describe([ref_stat_values(rollouts[0])], keys) == ref_describe_one(ref_stat_values(rollouts[0]))


def test_the_written_document_equals_the_reference_entries(tmp_path: Path) -> None:
    """Through the Aggregator (one-rollout tasks and repeats, spilled to the spool): every task
    entry of the file is the reference's for the same rows."""
    rng = random.Random(4)
    agg, by_task = Aggregator(tmp_path), {}
    for task in range(2500):
        size = 1 if task % 3 else 4
        rows = by_task[task] = [random_row(rng, task, r) for r in range(size)]
        for row in rows:
            agg.add(row, size, live=False)  # (live: a non-numeric usage.output_tokens is not summed up)
    out = tmp_path / "m.json"
    agg.write(out, run={"elapsed_s": 1.0}, servers=[])
    [doc] = orjson.loads(out.read_bytes())
    want = [ref_group_entry(t, [gm.rollout_of(r, numeric_of(r), r["response"]["usage"]) for r in rows], len(rows))
            for t, rows in by_task.items()]
    assert [orjson.dumps(e) for e in doc["group_level_metrics"]] == [orjson.dumps(orjson.loads(orjson.dumps(e)))
                                                                     for e in want]


class RefSpool(SortedSpool):
    """The spool's push before the full-window shortcut: always push, then pop while over."""

    def push(self, key: int, blob: bytes) -> None:
        run = self._run if self._last is None or key >= self._last else self._run + 1
        heapq.heappush(self._heap, (run, key, self._pushed, blob))
        self._pushed += 1
        self._held_bytes += len(blob)
        self.count += 1
        while len(self._heap) > self.max_records or (self._held_bytes > self.max_bytes and len(self._heap) > 1):
            self._emit(heapq.heappop(self._heap))


@pytest.mark.parametrize("seed", range(6))
def test_the_spool_writes_what_the_reference_writes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    window, max_bytes = rng.choice([1, 2, 8, 64]), rng.choice([40, 400, 8 << 20])
    keys = [k + rng.randint(-30, 30) for k in range(800)]  # nearly sorted, with equal keys
    if seed % 3 == 0:
        rng.shuffle(keys)
    spools = [SortedSpool(tmp_path, max_records=window, max_bytes=max_bytes),
              RefSpool(tmp_path, max_records=window, max_bytes=max_bytes)]
    for i, k in enumerate(keys):
        blob = f"{i}:".encode() * rng.randint(0, 9)
        for spool in spools:
            spool.push(k, blob)
        assert spools[0].held == spools[1].held and spools[0].runs == spools[1].runs
    for spool in spools:
        spool.finish()
    got, want = (list(s.records()) for s in spools)
    assert got == want and [k for k, _ in got] == sorted(keys)
    for spool in spools:
        spool.close()
