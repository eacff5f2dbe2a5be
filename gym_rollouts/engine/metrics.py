"""Aggregate metrics per agent, computed as rows finish (streaming: memory O(open tasks)).

For every numeric top-level field of an output row (``reward``, verifier extras, numeric task
fields; booleans count as 0/1), the token counts of ``response.usage`` and our ``model_calls`` /
``tool_calls``: count, mean, min, max, sample std and the median (``FieldStats``), keyed
``mean/<field>`` etc. as NeMo Gym's agent metrics are.
pass@k over repeats is computed per task once all its rollouts are in (tasks left open at the end
are closed with what they have): for 0/1 rewards the unbiased ``1 - C(n-c, k) / C(n, k)``, for
other rewards the max over the first k rollouts, plus ``pass@1[avg-of-k]``; both in percent like
NeMo Gym. Also token totals, stop reasons (context-length stops) and failures. The written file
is a list with one entry per agent: ``agent_ref``, ``agent_metrics``, ``key_metrics`` (NeMo Gym's
shape) plus our ``run`` (throughput, counts) and ``servers`` (the router's per-server stats),
then NeMo Gym's ``group_level_metrics`` (one entry per task, in task order: engine/group_metrics.py).

``median/<field>`` (exact, pandas' median: the mean of the two middle values for an even count)
comes from a value -> count map per field: memory O(distinct values per field), which is small
for rewards, booleans, token and step counts (a few thousand at most), but grows with the rows
for a continuous field (e.g. a verifier's timing): about 80 bytes per distinct value.
A non-finite float (NaN, inf) counts as missing (it is written as null, so that is what a resumed
run reads back); booleans count as 0/1.

Memory stays O(open tasks): the per-task entries are serialized as their tasks close and spooled
to an anonymous temporary file next to the output (engine/spool.py); ``write`` streams them into
the final JSON. ``result`` returns the same document as Python objects (all task entries in
memory: for tests and small merges).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import orjson

from gym_rollouts.engine.group_metrics import GroupLevel
from gym_rollouts.engine.stats import TOKEN_RATE_DIGITS, per_second
from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX

_SKIPPED_FIELDS = frozenset({TASK_INDEX, ROLLOUT_INDEX})
_USAGE_FIELDS = ("input_tokens", "output_tokens", "total_tokens")
_EXTRA_FIELDS = ("model_calls", "tool_calls")


class FieldStats:
    """One field's values as a value -> count map: count, mean, min, max, sample std and the exact
    median all come from it when asked (see module doc for its memory). A row costs one dict
    update per field; the statistics are computed when the metrics are written (or the progress
    display asks for a mean), two-pass over the distinct values (``math.fsum``), so they do not
    depend on the order rows arrived in (a resumed run's equal an uninterrupted run's, bit for bit)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[float, int] = {}

    def add(self, x: float) -> None:
        counts = self.counts
        counts[x] = counts.get(x, 0) + 1

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def mean(self) -> float:
        n = self.n
        return math.fsum(v * c for v, c in self.counts.items()) / n if n else 0.0

    @property
    def lo(self) -> float:
        return min(self.counts) if self.counts else math.inf

    @property
    def hi(self) -> float:
        return max(self.counts) if self.counts else -math.inf

    def std(self) -> float:
        n = self.n
        if n < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(math.fsum(c * (v - mean) ** 2 for v, c in self.counts.items()) / (n - 1))

    def median(self) -> float:
        return median_of_counts(self.counts, self.n)


def median_of_counts(counts: Mapping[float, int], n: int) -> float:
    """The median of ``n`` values given as value -> count (pandas' median; NaN when n is 0)."""
    if n <= 0:
        return math.nan
    lo_at, hi_at = (n - 1) // 2, n // 2  # positions of the middle value(s) in sorted order
    lo = None
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if lo is None and seen > lo_at:
            lo = value
        if seen > hi_at:
            return float(lo) if lo == value else (float(lo) + float(value)) / 2
    raise ValueError(f"median: counts add up to {seen}, not {n}")


def pass_at_k(rewards: list[float], k: int) -> float:
    """pass@k of one task from its rewards in rollout order (see module doc); in [0, 1]."""
    return pass_at_every_k(rewards)[k - 1]


def pass_at_every_k(rewards: list[float]) -> list[float]:
    """pass@k for k = 1..n in O(n): for 0/1 rewards ``1 - C(wrong, k) / C(n, k)`` as a running
    product, else the running max (large tasks must not cost O(n^2) when they close)."""
    n = len(rewards)
    if all(r in (0.0, 1.0) for r in rewards):
        wrong = sum(1 for r in rewards if not r)
        out, ratio = [], 1.0
        for k in range(1, n + 1):
            if k > wrong:
                out.append(1.0)
                continue
            ratio *= (wrong - k + 1) / (n - k + 1)  # C(wrong, k) / C(n, k)
            out.append(1.0 - ratio)
        return out
    best, out = -math.inf, []
    for r in rewards:
        best = r if r > best else best
        out.append(best)
    return out


@dataclass
class AgentAggregate:
    fields: dict[str, FieldStats] = field(default_factory=dict)
    open_tasks: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    open_failures: dict[int, int] = field(default_factory=dict)  # open task -> rollouts failed for good
    pass_sum: dict[int, float] = field(default_factory=dict)
    avg_sum: dict[int, float] = field(default_factory=dict)
    tasks_with_k: dict[int, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_USAGE_FIELDS, 0))
    stops: dict[str, int] = field(default_factory=dict)
    count: int = 0
    live_count: int = 0  # rows of this run (not of earlier runs): throughput
    live_output_tokens: int = 0
    spool_dir: Path | None = None
    groups: GroupLevel = field(init=False)

    def __post_init__(self) -> None:
        self.groups = GroupLevel(self.spool_dir)

    def add(self, row: Mapping[str, Any], task_size: int, live: bool) -> None:
        """One finished row (the hot path: plain loops, no per-field method calls but the fold)."""
        self.count += 1
        fields = self.fields
        numeric: dict[str, Any] = {}  # finite numeric top-level fields, booleans as 0/1
        for name, value in row.items():
            cls = value.__class__
            if cls is float:
                if value - value != 0.0:  # NaN or inf: missing (it is written as null)
                    continue
            elif cls is bool:
                value = 1 if value else 0
            elif cls is not int:
                continue
            numeric[name] = value
            if name not in _SKIPPED_FIELDS:
                acc = fields.get(name)
                if acc is None:
                    acc = fields[name] = FieldStats()
                acc.add(value)
        response = row.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            tokens = self.tokens
            for name in _USAGE_FIELDS:
                value = usage.get(name)
                if value.__class__ is int:
                    tokens[name] += value
                    self._fold(name, value)
            if live:
                self.live_output_tokens += usage.get("output_tokens") or 0
        extras = row.get(EXTRAS)
        if isinstance(extras, dict):
            for name in _EXTRA_FIELDS:
                value = extras.get(name)
                if value.__class__ is int:
                    self._fold(name, value)
            stop = extras.get("stop_reason")
            if stop:
                self.stops[stop] = self.stops.get(stop, 0) + 1
        if live:
            self.live_count += 1
        self.groups.add(row, numeric, usage, task_size)
        reward, task = numeric.get("reward"), row.get(TASK_INDEX)
        if reward is not None and task.__class__ is int:
            self._add_reward(task, row.get(ROLLOUT_INDEX, 0), reward, task_size)

    def _add_reward(self, task: int, rollout: Any, reward: float, task_size: int) -> None:
        """pass@k bookkeeping of one row."""
        if task_size <= 1:  # a one-rollout task: pass@1 and its average are the reward itself
            self.pass_sum[1] = self.pass_sum.get(1, 0.0) + reward
            self.avg_sum[1] = self.avg_sum.get(1, 0.0) + reward
            self.tasks_with_k[1] = self.tasks_with_k.get(1, 0) + 1
            return
        pending = self.open_tasks.setdefault(task, [])
        pending.append((rollout, float(reward)))
        if len(pending) + self.open_failures.get(task, 0) >= task_size:
            self._close(task)

    def add_failure(self, task: int, task_size: int) -> None:
        """A rollout of ``task`` that failed for good: the task closes once its rows and failures
        account for all ``task_size`` rollouts (pass@k over the rows it has, as ``finish`` would)."""
        self.groups.add_failure(task, task_size)
        if task_size <= 1:
            return
        failed = self.open_failures[task] = self.open_failures.get(task, 0) + 1
        if len(self.open_tasks.get(task, ())) + failed >= task_size:
            self._close(task)

    def _close(self, task: int) -> None:
        self.open_failures.pop(task, None)
        pending = self.open_tasks.pop(task, None)
        if pending:
            self._close_task(pending)

    def _fold(self, name: str, x: float) -> None:
        acc = self.fields.get(name)
        if acc is None:
            acc = self.fields[name] = FieldStats()
        acc.add(x)

    def _close_task(self, pending: list[tuple[int, float]]) -> None:
        rewards = [r for _, r in sorted(pending)]
        running = 0.0
        for k, passed in enumerate(pass_at_every_k(rewards), start=1):
            running += rewards[k - 1]
            self.pass_sum[k] = self.pass_sum.get(k, 0.0) + passed
            self.avg_sum[k] = self.avg_sum.get(k, 0.0) + running / k
            self.tasks_with_k[k] = self.tasks_with_k.get(k, 0) + 1

    def finish(self) -> None:
        for task in list(self.open_tasks):
            self._close_task(self.open_tasks.pop(task))
        self.open_failures.clear()
        self.groups.finish()

    def agent_metrics(self, elapsed_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        for name, acc in sorted(self.fields.items()):
            out[f"mean/{name}"] = acc.mean
            out[f"std/{name}"] = acc.std()
            out[f"min/{name}"] = acc.lo
            out[f"max/{name}"] = acc.hi
            out[f"median/{name}"] = acc.median()
        for k in sorted(self.tasks_with_k):
            out[f"pass@{k}/reward"] = 100.0 * self.pass_sum[k] / self.tasks_with_k[k]
            out[f"pass@1[avg-of-{k}]/reward"] = 100.0 * self.avg_sum[k] / self.tasks_with_k[k]
        for name, total in self.tokens.items():
            out[f"total/{name}"] = total
        for stop, n in sorted(self.stops.items()):
            out[f"stops/{stop}"] = n
        out["rollouts_this_run"] = self.live_count
        # the run summary's definition (engine/stats.py), so one agent's rate equals the summary's
        out["rollouts_per_s"] = per_second(self.live_count, elapsed_s) if elapsed_s > 0 else None
        out["output_tokens_per_s"] = (per_second(self.live_output_tokens, elapsed_s, TOKEN_RATE_DIGITS)
                                      if elapsed_s > 0 else None)
        return out


GROUPS_KEY = "group_level_metrics"


class Aggregator:
    """Per-agent aggregates of a whole run (rows of earlier runs included on resume). The closed
    tasks' entries are spooled in ``spool_dir`` (the output's folder; None: the system temp dir)."""

    def __init__(self, spool_dir: Path | None = None) -> None:
        self.spool_dir = spool_dir
        self.agents: dict[str, AgentAggregate] = {}
        self.failures: dict[str, int] = {}
        self.prior_failures: dict[str, int] = {}

    def _agent(self, name: str) -> AgentAggregate:
        agent = self.agents.get(name)
        if agent is None:
            agent = self.agents[name] = AgentAggregate(spool_dir=self.spool_dir)
        return agent

    def add(self, row: Mapping[str, Any], task_size: int, *, live: bool = True) -> None:
        name = _agent_of(row)
        agent = self.agents.get(name)
        if agent is None:
            agent = self._agent(name)
        agent.add(row, task_size, live)

    def mean(self, name: str) -> float | None:
        """The mean of one field over every agent's rows (None when no row had it)."""
        accs = [a.fields[name] for a in self.agents.values() if name in a.fields]
        n = sum(acc.n for acc in accs)
        return sum(acc.mean * acc.n for acc in accs) / n if n else None

    def add_failure(self, agent_name: str, task_index: int | None = None, task_size: int = 1) -> None:
        """A rollout that failed for good; with its task, that task can close (memory stays
        O(open tasks) through a stretch of failures)."""
        self.failures[agent_name] = self.failures.get(agent_name, 0) + 1
        if task_index is not None:
            self._agent(agent_name).add_failure(task_index, task_size)

    def add_prior_failure(self, agent_name: str) -> None:
        """A rollout that used up its attempts in an earlier run (called from the reader thread:
        its own dict, so no update races with ``add_failure`` on the event loop)."""
        self.prior_failures[agent_name] = self.prior_failures.get(agent_name, 0) + 1

    def _heads(self, run: Mapping[str, Any], servers: Any,
                environment: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[dict[str, Any], Any]]:
        """Each agent's entry without its task entries, and where they come from: the agent (its
        tasks all closed), or the list its environment's ``/aggregate_metrics`` computed
        (``environment``: agent -> that answer, see engine/env_metrics.py)."""
        heads: list[tuple[dict[str, Any], Any]] = []
        for name in sorted(set(self.agents) | set(self.failures) | set(self.prior_failures)):
            agent = self._agent(name)
            agent.finish()
            metrics = agent.agent_metrics(float(run.get("elapsed_s") or 0.0))
            metrics["failures"] = self.failures.get(name, 0) + self.prior_failures.get(name, 0)
            key = {k: v for k, v in metrics.items() if k.startswith(("mean/", "pass@"))}
            head = {"agent_ref": {"name": name}, "agent_metrics": metrics, "key_metrics": key,
                    "run": dict(run), "servers": servers}
            theirs = (environment or {}).get(name)
            if theirs is not None:
                groups = theirs.get(GROUPS_KEY)
                heads.append((_with_environment(head, theirs), groups if isinstance(groups, list) else agent))
            else:
                heads.append((head, agent))
        return heads

    def result(self, *, run: Mapping[str, Any], servers: Any,
               environment: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The metrics document as Python objects (every task entry in memory: see ``write``)."""
        return [{**head, GROUPS_KEY: [orjson.loads(blob) for blob in _task_entries(source)]}
                for head, source in self._heads(run, servers, environment)]

    def write(self, path: Path, *, run: Mapping[str, Any], servers: Any,
              environment: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Write the metrics document to ``path`` (via ``<name>.partial``, then renamed): ``result``'s
        document, indented, one line per task entry, the entries streamed from the spool (memory
        O(one entry)). The last call: the spool files are released."""
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as fh:
                _write_document(fh, self._heads(run, servers, environment))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
            self.close()

    def close(self) -> None:
        for agent in self.agents.values():
            agent.groups.close()


def _with_environment(head: dict[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """An agent's entry with its environment's own ``/aggregate_metrics`` answer merged in, as NeMo
    Gym writes it: the environment's ``agent_metrics`` over ours (its benchmark-specific figures
    added, same-named ones as it computes them), its ``key_metrics`` (the headline it chose)."""
    env_metrics = theirs.get("agent_metrics") if isinstance(theirs.get("agent_metrics"), dict) else {}
    key = theirs.get("key_metrics") if isinstance(theirs.get("key_metrics"), dict) else None
    return {**head, "agent_metrics": {**head["agent_metrics"], **env_metrics},
            "key_metrics": key if key is not None else head["key_metrics"],
            "metrics_from": "the environment's /aggregate_metrics, over ours"}


def _task_entries(source: Any) -> Iterator[bytes]:
    """Serialized task entries: spooled by an agent aggregate, or listed by an environment."""
    if isinstance(source, AgentAggregate):
        yield from source.groups.entries()
    elif isinstance(source, list):
        for entry in source:
            yield orjson.dumps(entry)


def _write_document(fh: BinaryIO, heads: list[tuple[dict[str, Any], Any]]) -> None:
    """``[entry, ...]`` indented as orjson's OPT_INDENT_2 does, but each task entry compact on one
    line (a third smaller than indented, and one task per line), streamed from its spool."""
    if not heads:
        fh.write(b"[]")
        return
    fh.write(b"[")
    for i, (head, agent) in enumerate(heads):
        fh.write(b"\n  " if i == 0 else b",\n  ")
        body = orjson.dumps(head, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")
        fh.write(body[: -len(b"\n  }")])  # reopened: the task list goes last
        fh.write(b',\n    "' + GROUPS_KEY.encode() + b'": [')
        n = 0
        for blob in _task_entries(agent):
            fh.write(b"\n      " if n == 0 else b",\n      ")
            fh.write(blob)
            n += 1
        fh.write(b"\n    ]\n  }" if n else b"]\n  }")
    fh.write(b"\n]")


def _agent_of(row: Mapping[str, Any]) -> str:
    ref = row.get("agent_ref")
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        return ref["name"]
    return str((row.get(EXTRAS) or {}).get("agent_name") or "agent")
