"""NeMo Gym's ``group_level_metrics``: one entry per task, computed when the task closes.

What NeMo Gym 0.4.0 writes per task in ``<stem>_aggregate_metrics.json`` (its reward profiler
run on the verify results, ``response`` stripped to ``{"usage": ...}``), and so what we write:

- ``_ng_task_index``; then ``mean/``, ``max/``, ``min/``, ``median/``, ``std/<field>`` (all floats)
  over the task's rows, for every numeric top-level field of the row but the task and rollout
  indices (``reward``, verifier extras, numeric task fields; booleans as 0/1) and every numeric
  field of ``response.usage`` (a usage field wins over a top-level field of the same name). A value
  that is missing, null or not a number does not count (pandas' NaN skipping): a field no row of
  the task has is left out; ``std`` is the sample std and needs two values, except that when no
  field of the task has two (a one-rollout task) a field every row has gets ``std`` 0.0.
- ``sample``: ``{"agent_ref": {"name": "agent"}}``, the placeholder row NeMo Gym's aggregation
  profiles with (its ``/aggregate_metrics`` builds rows of that shape), so nothing of the task row
  is kept per task.
- ``num_rollouts`` (rows), ``expected_num_rollouts`` (the task's size), ``missing_num_rollouts``
  (their difference: rollouts that failed for good have no row), ``reward_profile_completion_pct``.
- ``rollout_infos``: per row, in rollout order: ``rollout_id`` ``"<task>:<rollout>"``, the two
  indices, ``reward`` as found (when the row has the key), the numeric usage fields, then the other
  numeric top-level fields (booleans as 0/1).

Our own difference: a non-finite float (NaN, inf) counts as missing everywhere, as it reads back
from the rows file (JSON has no NaN: orjson writes null), so a resumed run's entries equal an
uninterrupted run's. A task with no row at all (every rollout failed) has no entry, as in NeMo
Gym. Rows without an integer task index are left out of the groups.

Memory: the rows of open tasks (their numeric fields only); a closed task's entry is serialized
at once (compact orjson) and handed to a ``SortedSpool`` (engine/spool.py) that gives them back in task order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import orjson

from gym_rollouts.engine.spool import SortedSpool
from gym_rollouts.records import ROLLOUT_INDEX, TASK_INDEX

SAMPLE = {"agent_ref": {"name": "agent"}}
STATS = ("mean", "max", "min", "median", "std")
MAX_CACHED_LAYOUTS = 512
_INFO_SKIPPED = frozenset({TASK_INDEX, ROLLOUT_INDEX, "reward", "response"})
_STAT_SKIPPED = _INFO_SKIPPED | {"rollout_id"}  # what of a rollout info is not a statistic's value

# one open task's row: (rollout index, rollout info, stat values that differ from the info)
Rollout = tuple[int, dict[str, Any], dict[str, float] | None]


def median(values: list[float]) -> float:
    """The median as pandas/numpy compute it (the mean of the two middle values for an even count)."""
    return _median_sorted(sorted(values))


def _median_sorted(s: list[float]) -> float:
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (float(s[mid - 1]) + float(s[mid])) / 2


def describe(rows: list[Mapping[str, float]], keys: dict[Any, tuple[str, ...]] | None = None) -> dict[str, float]:
    """NeMo Gym's per-group statistics of ``rows`` (field -> finite number; see module doc):
    mean (sum / n), max, min, median, and the two-pass sample std (ddof 1), as pandas computes them.
    ``keys``: a cache of output keys (field -> its five keys; field set -> a one-row group's keys)."""
    keys = {} if keys is None else keys
    if len(rows) == 1:  # the common one-rollout task: every statistic is the value, std 0
        out: dict[str, float] = {}
        _describe_one(rows[0], keys, out)
        return out
    columns: dict[str, list[float]] = {}
    for values in rows:
        for name, x in values.items():
            col = columns.get(name)
            if col is None:
                columns[name] = [x]
            else:
                col.append(x)
    described = []  # (keys, mean, max, min, median, std or None)
    any_std = False
    for name, col in columns.items():
        n = len(col)
        mean = sum(col) / n
        k = keys.get(name) or _keys_of(name, keys)
        if n == 1:
            x = float(col[0])
            described.append((k, mean, x, x, x, None))
            continue
        s = sorted(col)
        std = math.sqrt(sum((x - mean) ** 2 for x in col) / (n - 1))
        described.append((k, mean, float(s[-1]), float(s[0]), _median_sorted(s), std))
        any_std = True
    if not any_std:  # pandas gives NaN everywhere; NeMo Gym then puts 0 for the fields every row has
        full = [len(col) == len(rows) for col in columns.values()]  # in the order of ``described``
        described = [(*d[:5], 0.0 if every else None) for d, every in zip(described, full)]
    out = {}
    for at in range(5):
        for d in described:
            x = d[at + 1]
            if x is not None:
                out[d[0][at]] = x
    return out


def _describe_one(values: Mapping[str, float], keys: dict[Any, tuple[str, ...]], out: dict[str, Any]) -> None:
    """``describe([values])`` added to ``out``: every statistic is the value, std 0."""
    names = tuple(values)
    layout = keys.get(names) or _layout_of(names, keys)
    floats = list(map(float, values.values()))
    out.update(zip(layout, floats * 4 + [0.0] * len(floats)))


def _keys_of(name: str, cache: dict[Any, tuple[str, ...]]) -> tuple[str, ...]:
    k = cache[name] = tuple(f"{stat}/{name}" for stat in STATS)
    return k


def _layout_of(names: tuple[str, ...], cache: dict[Any, tuple[str, ...]]) -> tuple[str, ...]:
    """The keys of a one-row group with these fields, stat-major (cached: rows share field sets;
    the cache is dropped when rows keep bringing new sets)."""
    if len(cache) > MAX_CACHED_LAYOUTS:
        cache.clear()
    k = cache[names] = tuple(f"{stat}/{name}" for stat in STATS for name in names)
    return k


def rollout_of(row: Mapping[str, Any], numeric: Mapping[str, float], usage: Any) -> Rollout:
    """One row's part of its task's entry. ``numeric``: the row's finite numeric top-level fields
    (booleans already 0/1); ``usage``: ``response.usage`` (anything)."""
    task, rollout = row.get(TASK_INDEX), row.get(ROLLOUT_INDEX)
    info: dict[str, Any] = {"rollout_id": f"{task}:{rollout}", TASK_INDEX: task, ROLLOUT_INDEX: rollout}
    if "reward" in row:
        info["reward"] = row["reward"]
    override: dict[str, float] | None = None
    if isinstance(usage, dict):
        for name, value in usage.items():
            cls = value.__class__
            if cls is bool:
                value = 1 if value else 0
            elif not (cls is int or (cls is float and value - value == 0.0)):
                continue
            info[name] = value
            if name in numeric and numeric[name] != value:
                override = override or {}
                override[name] = value  # the stats take usage's value, the info the row's
    for name, value in numeric.items():
        if name not in _INFO_SKIPPED:
            info[name] = value
    return rollout if rollout.__class__ is int else -1, info, override


def stat_values(rollout: Rollout) -> dict[str, float]:
    """The values the statistics see: the row's numeric fields and usage (usage wins)."""
    _, info, override = rollout
    reward = _finite(info.get("reward"))
    values = {} if reward is None else {"reward": reward}  # the reward first
    for name, value in info.items():
        if name not in _STAT_SKIPPED:
            values[name] = value
    if override:
        values.update(override)
    return values


def group_entry(task: int, rollouts: list[Rollout], expected: int,
                keys: dict[Any, tuple[str, ...]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {TASK_INDEX: task}
    if len(rollouts) == 1:  # the common one-rollout task (describe's shortcut, without its copy)
        _describe_one(stat_values(rollouts[0]), {} if keys is None else keys, entry)
    else:
        rollouts = sorted(rollouts, key=lambda r: r[0])
        entry.update(describe([stat_values(r) for r in rollouts], keys))
    n = len(rollouts)
    entry["sample"] = SAMPLE
    entry["num_rollouts"] = n
    entry["expected_num_rollouts"] = expected
    entry["missing_num_rollouts"] = expected - n
    entry["reward_profile_completion_pct"] = 100.0 if expected == 0 else 100.0 * n / expected
    entry["rollout_infos"] = [info for _, info, _ in rollouts]
    return entry


def _finite(value: Any) -> float | None:
    cls = value.__class__
    if cls is int:
        return value
    if cls is float:
        return value if value - value == 0.0 else None
    if cls is bool:
        return int(value)
    return None


class GroupLevel:
    """The per-task entries of one agent: open tasks in memory, closed ones in a ``SortedSpool``."""

    def __init__(self, spool_dir: Path | None = None) -> None:
        self.open: dict[int, list[Rollout]] = {}
        self.sizes: dict[int, int] = {}
        self.failed: dict[int, int] = {}  # open task -> rollouts failed for good
        self.spool = SortedSpool(spool_dir)
        self._keys: dict[Any, tuple[str, ...]] = {}  # field (or field set) -> statistics' keys

    def add(self, row: Mapping[str, Any], numeric: Mapping[str, float], usage: Any, task_size: int) -> None:
        task = row.get(TASK_INDEX)
        if task.__class__ is not int:
            return
        rollout = rollout_of(row, numeric, usage)
        if task_size <= 1 and task not in self.open:
            self._write(task, [rollout], max(task_size, 1))
            return
        pending = self.open.get(task)
        if pending is None:
            pending = self.open[task] = []
        pending.append(rollout)
        self.sizes[task] = task_size
        if len(pending) + self.failed.get(task, 0) >= task_size:
            self._close(task)

    def add_failure(self, task: int, task_size: int) -> None:
        """A rollout of ``task`` that failed for good (it closes the task once rows and failures
        account for ``task_size``; a task with no row has no entry)."""
        failed = self.failed[task] = self.failed.get(task, 0) + 1
        if len(self.open.get(task, ())) + failed >= task_size:
            self._close(task)

    def _close(self, task: int) -> None:
        self.failed.pop(task, None)
        size = self.sizes.pop(task, 0)
        pending = self.open.pop(task, None)
        if pending:
            self._write(task, pending, size)

    def _write(self, task: int, rollouts: list[Rollout], expected: int) -> None:
        blob = orjson.dumps(group_entry(task, rollouts, expected, self._keys))
        self.spool.push(task, bytes(memoryview(blob)))  # an exact-size copy: orjson's keeps ~8 KB spare

    def finish(self) -> None:
        """Close the tasks still open (their failed rollouts were counted in an earlier run, or
        never arrived) with what they have, and seal the spool."""
        for task in list(self.open):
            self._close(task)
        self.failed.clear()
        self.spool.finish()

    def entries(self) -> Iterator[bytes]:
        """The entries in task order (after ``finish``), each serialized compact (orjson)."""
        for _, blob in self.spool.records():
            yield blob

    def close(self) -> None:
        self.spool.close()
