"""Merge the outputs of several shards into one run's files, checking that nothing is lost.

What each shard expected is in its ``<stem>_materialized_inputs.jsonl``; what it produced is its
rows file and its ``<stem>_failures.jsonl``; what it was cut from is its run manifest
``<stem>_run.json``. The merge refuses (and writes nothing) when shards overlap, a (task, rollout)
has two rows, a row was not expected, an expected rollout has neither a row nor a failure, or the
manifests disagree: another input or served model, other settings than the shard index, different
``num_shards``, or shard indices not covering ``0..num_shards-1`` exactly once (a shard that never
ran, or one given twice). Rollouts that failed in their shard are carried into the merged failures
file, like a single run's.

Memory is O(rollouts) small tuples, not O(bytes): a first pass indexes (task, rollout) -> byte
range of each line; the rows are then copied in (task, rollout) order straight from the shards.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from gym_rollouts.engine.manifest import differences, read_manifest
from gym_rollouts.engine.metrics import Aggregator
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.errors import ConfigError
from gym_rollouts.records import ROLLOUT_INDEX, TASK_INDEX
from gym_rollouts.sweep.merge_metrics import merged_run, shard_models

MATERIALIZED_SUFFIX = "_materialized_inputs.jsonl"
MAX_LISTED = 20

Key = tuple[int, int]
Ref = tuple[int, int, int]  # (shard number, byte offset, length)


class MergeError(Exception):
    """The shards do not add up; ``problems`` lists why (nothing was written)."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{len(problems)} problem(s) merging shards:\n  " + "\n  ".join(shown) + more)
        self.problems = problems


@dataclass
class MergePlan:
    shards: list[OutputPaths]
    rows: dict[Key, Ref] = field(default_factory=dict)
    expected: dict[Key, Ref] = field(default_factory=dict)
    failed: set[Key] = field(default_factory=set)
    failed_attempts: int = 0
    skipped_inputs: set[Any] = field(default_factory=set)  # input line numbers
    task_sizes: Counter[int] = field(default_factory=Counter)
    aggregator: Aggregator = field(default_factory=Aggregator)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed_final(self) -> list[Key]:
        return sorted(k for k in self.expected if k not in self.rows and k in self.failed)


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def rows_path_of_materialized(path: Path) -> Path:
    return path.with_name(path.name[: -len(MATERIALIZED_SUFFIX)] + ".jsonl")


def discover(inputs: list[Path], *, exclude: Path | None = None) -> list[OutputPaths]:
    """Shard outputs named on the command line: rows files, or directories searched for them."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted((rows_path_of_materialized(m) for m in item.rglob(f"*{MATERIALIZED_SUFFIX}")), key=_natural)
        elif item.name.endswith(MATERIALIZED_SUFFIX):
            found.append(rows_path_of_materialized(item))
        else:
            found.append(item)
    skip = {p.resolve() for p in OutputPaths(exclude).all()} if exclude else set()
    unique: dict[Path, OutputPaths] = {}
    for rows in found:
        if rows.resolve() not in skip:
            unique.setdefault(rows.resolve(), OutputPaths(rows))
    return list(unique.values())


def _lines(path: Path) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """(offset, length, parsed row or None) for each non-blank line of a JSONL file."""
    offset = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    row = None
                yield offset, len(line), row if isinstance(row, dict) else None
            offset += len(line)


def _key(row: dict[str, Any]) -> Key | None:
    task, rollout = row.get(TASK_INDEX), row.get(ROLLOUT_INDEX)
    if isinstance(task, int) and isinstance(rollout, int):
        return task, rollout
    return None


def plan_merge(shards: list[OutputPaths]) -> MergePlan:
    """Index every shard and list every reason the shards do not add up."""
    plan = MergePlan(shards)
    for n, paths in enumerate(shards):
        absent = [p for p in (paths.rows, paths.materialized_inputs) if not p.is_file()]
        if absent:
            plan.problems += [f"{p}: missing (is {paths.rows} a collect output?)" for p in absent]
            continue
        _index_expected(plan, n, paths)
        _index_rows(plan, n, paths)
        _index_failures(plan, n, paths)
    _check_coverage(plan)
    _check_shard_settings(plan)
    return plan


def _index_expected(plan: MergePlan, n: int, paths: OutputPaths) -> None:
    for offset, length, row in _lines(paths.materialized_inputs):
        key = _key(row) if row is not None else None
        if key is None:
            plan.problems.append(f"{paths.materialized_inputs}: a line without task/rollout indices at byte {offset}")
        elif key in plan.expected:
            other = plan.shards[plan.expected[key][0]].rows
            plan.problems.append(f"task {key[0]} rollout {key[1]} is in two shards: {other} and {paths.rows}")
        else:
            plan.expected[key] = (n, offset, length)
            plan.task_sizes[key[0]] += 1


def _index_rows(plan: MergePlan, n: int, paths: OutputPaths) -> None:
    for offset, length, row in _lines(paths.rows):
        key = _key(row) if row is not None else None
        if key is None:
            plan.problems.append(f"{paths.rows}: an unreadable row at byte {offset}")
        elif key in plan.rows:
            plan.problems.append(f"task {key[0]} rollout {key[1]} has two rows "
                                 f"({plan.shards[plan.rows[key][0]].rows} and {paths.rows})")
        elif key not in plan.expected or plan.expected[key][0] != n:
            plan.problems.append(f"{paths.rows}: task {key[0]} rollout {key[1]} was not in this shard's inputs")
        else:
            plan.rows[key] = (n, offset, length)
            plan.aggregator.add(row, plan.task_sizes[key[0]])  # type: ignore[arg-type]


def _index_failures(plan: MergePlan, n: int, paths: OutputPaths) -> None:
    if not paths.failures.is_file():
        return
    for _offset, _length, row in _lines(paths.failures):
        if row is None:
            continue
        key = _key(row)
        if key is not None:
            plan.failed.add(key)
            plan.failed_attempts += 1
        elif row.get("error_class") == "InputError":
            plan.skipped_inputs.add(row.get("input_line"))


def _listed(keys: list[Key]) -> str:
    shown = ", ".join(f"{t}/{r}" for t, r in keys[:MAX_LISTED])
    return shown + (f" ... (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def _check_coverage(plan: MergePlan) -> None:
    missing = sorted(k for k in plan.expected if k not in plan.rows and k not in plan.failed)
    if missing:
        plan.problems.append(f"{len(missing)} expected rollout(s) have neither a row nor a failure record "
                             f"(task/rollout): {_listed(missing)}; was a shard interrupted? resume it first")


def _manifests(plan: MergePlan) -> list[dict[str, Any]] | None:
    """Each shard's run manifest, or None (with the problems noted) when one cannot be read."""
    found: list[dict[str, Any]] = []
    for paths in plan.shards:
        try:
            found.append(read_manifest(paths.manifest))
        except ConfigError as exc:
            plan.problems.append(f"{paths.rows}: no usable run manifest, so it cannot be checked against the "
                                 f"other shards ({exc})")
    return found if len(found) == len(plan.shards) else None


def _check_shard_settings(plan: MergePlan) -> None:
    """From the shards' ``<stem>_run.json``: one input, one served model, one set of settings but the
    shard index, one ``num_shards``, and indices covering ``0..num_shards-1`` exactly once."""
    manifests = _manifests(plan)
    if not manifests:
        return
    first, first_rows = manifests[0], plan.shards[0].rows
    for paths, other in zip(plan.shards[1:], manifests[1:]):
        found = [d for d in differences(first, other) if not d.startswith("shard.index:")]
        if first.get("served_model") != other.get("served_model"):
            found.append(f"served_model: {first.get('served_model')!r} -> {other.get('served_model')!r}")
        if found:
            plan.problems.append(f"{paths.rows} is not a shard of the same run as {first_rows}: "
                                 + "; ".join(found))
    counts = sorted({m["settings"]["shard"]["count"] for m in manifests})
    indices = sorted(m["settings"]["shard"]["index"] for m in manifests)
    if len(counts) > 1:
        plan.problems.append(f"the shards were cut with different num_shards: {counts}")
    elif indices != list(range(counts[0])):
        absent = sorted(set(range(counts[0])) - set(indices))
        why = f" (the tasks of shard(s) {absent} are in no shard: is a shard missing from the merge?)" if absent else ""
        plan.problems.append(f"shard indices {indices} do not cover 0..{counts[0] - 1} exactly once{why}")


def _copy_sorted(refs: dict[Key, Ref], sources: list[Path], out: Path) -> int:
    handles = [src.open("rb") for src in sources]
    try:
        with out.open("wb") as dst:
            for key in sorted(refs):
                n, offset, length = refs[key]
                handles[n].seek(offset)
                line = handles[n].read(length)
                dst.write(line if line.endswith(b"\n") else line + b"\n")
    finally:
        for h in handles:
            h.close()
    return len(refs)


def _concat_failures(plan: MergePlan, out: Path) -> None:
    with out.open("wb") as dst:
        for paths in plan.shards:
            if paths.failures.is_file():
                with paths.failures.open("rb") as src:
                    for line in src:
                        if line.strip():
                            dst.write(line if line.endswith(b"\n") else line + b"\n")


def _shard_metrics(paths: OutputPaths) -> Any:
    try:
        return orjson.loads(paths.aggregate_metrics.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _agent_of_expected(plan: MergePlan, key: Key) -> str:
    """The agent a failed rollout belonged to (its materialized row's ``agent_ref``)."""
    n, offset, length = plan.expected[key]
    with plan.shards[n].materialized_inputs.open("rb") as fh:
        fh.seek(offset)
        row = orjson.loads(fh.read(length))
    ref = row.get("agent_ref") if isinstance(row, dict) else None
    return ref["name"] if isinstance(ref, dict) and isinstance(ref.get("name"), str) else "agent"


def write_merge(plan: MergePlan, output: OutputPaths) -> list[dict[str, Any]]:
    """Write the merged rows, materialized inputs, failures and metrics; return the metrics."""
    if plan.problems:
        raise MergeError(plan.problems)
    output.rows.parent.mkdir(parents=True, exist_ok=True)
    written = (output.rows, output.materialized_inputs, output.failures, output.aggregate_metrics)
    tmp = {p: p.with_name(p.name + ".partial") for p in written}
    _copy_sorted(plan.rows, [s.rows for s in plan.shards], tmp[output.rows])
    _copy_sorted(plan.expected, [s.materialized_inputs for s in plan.shards], tmp[output.materialized_inputs])
    _concat_failures(plan, tmp[output.failures])
    for key in plan.failed_final:
        plan.aggregator.add_failure(_agent_of_expected(plan, key))
    shard_docs = [_shard_metrics(s) for s in plan.shards]
    run = merged_run(expected=len(plan.expected), rollouts=len(plan.rows), failures=len(plan.failed_final),
                     failed_attempts=plan.failed_attempts, skipped_inputs=len(plan.skipped_inputs),
                     mean_reward=plan.aggregator.mean("reward"),
                     shard_docs=shard_docs, shard_rows=[str(s.rows.resolve()) for s in plan.shards])
    run["model"] = shard_models(shard_docs)
    entries = plan.aggregator.result(run=run, servers=[])
    tmp[output.aggregate_metrics].write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))
    for path in (output.manifest, *written):  # no manifest: a merged file is not a run to resume
        path.unlink(missing_ok=True)
    for final, partial in tmp.items():
        os.replace(partial, final)
    return entries
