"""Aggregate metrics per agent, computed as rows finish (streaming: memory O(open tasks)).

For every numeric top-level field of an output row (``reward``, verifier extras, numeric task
fields; booleans count as 0/1) and the numeric fields of ``response.usage``: count, mean, min,
max and sample std (Welford), keyed ``mean/<field>`` etc. as NeMo Gym's agent metrics are.
pass@k over repeats is computed per task once all its rollouts are in (tasks left open at the end
are closed with what they have): for 0/1 rewards the unbiased ``1 - C(n-c, k) / C(n, k)``, for
other rewards the max over the first k rollouts, plus ``pass@1[avg-of-k]``; both in percent like
NeMo Gym. Also token totals, stop reasons (context-length stops) and failures. The written file
is a list with one entry per agent: ``agent_ref``, ``agent_metrics``, ``key_metrics`` (NeMo Gym's
shape) plus our ``run`` (throughput, counts) and ``servers`` (the router's per-server stats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX

_SKIPPED_FIELDS = frozenset({TASK_INDEX, ROLLOUT_INDEX})
_USAGE_FIELDS = ("input_tokens", "output_tokens", "total_tokens")
_EXTRA_FIELDS = ("model_calls", "tool_calls")


class Welford:
    """Running count / mean / M2 / min / max of one field."""

    __slots__ = ("n", "mean", "m2", "lo", "hi")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)
        if x < self.lo:
            self.lo = x
        if x > self.hi:
            self.hi = x

    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


def pass_at_k(rewards: list[float], k: int) -> float:
    """pass@k of one task from its rewards in rollout order (see module doc); in [0, 1]."""
    n = len(rewards)
    if all(r in (0.0, 1.0) for r in rewards):
        wrong = sum(1 for r in rewards if not r)
        return 1.0 if wrong < k else 1.0 - math.comb(wrong, k) / math.comb(n, k)
    return max(rewards[:k])


@dataclass
class AgentAggregate:
    fields: dict[str, Welford] = field(default_factory=dict)
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

    def add(self, row: Mapping[str, Any], task_size: int, live: bool) -> None:
        """One finished row (the hot path: plain loops, no per-field method calls)."""
        self.count += 1
        fold = self._fold
        for name, value in row.items():
            cls = value.__class__
            if (cls is float or cls is int or cls is bool) and name not in _SKIPPED_FIELDS:
                fold(name, value)
        response = row.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            tokens = self.tokens
            for name in _USAGE_FIELDS:
                value = usage.get(name)
                if value.__class__ is int:
                    tokens[name] += value
                    fold(name, value)
            if live:
                self.live_output_tokens += usage.get("output_tokens") or 0
        extras = row.get(EXTRAS)
        if isinstance(extras, dict):
            for name in _EXTRA_FIELDS:
                value = extras.get(name)
                if value.__class__ is int:
                    fold(name, value)
            stop = extras.get("stop_reason")
            if stop:
                self.stops[stop] = self.stops.get(stop, 0) + 1
        if live:
            self.live_count += 1
        reward, task = row.get("reward"), row.get(TASK_INDEX)
        if reward.__class__ in (int, float, bool) and task.__class__ is int:
            if task_size <= 1:  # a one-rollout task: pass@1 and its average are the reward itself
                self.pass_sum[1] = self.pass_sum.get(1, 0.0) + reward
                self.avg_sum[1] = self.avg_sum.get(1, 0.0) + reward
                self.tasks_with_k[1] = self.tasks_with_k.get(1, 0) + 1
                return
            pending = self.open_tasks.setdefault(task, [])
            pending.append((row.get(ROLLOUT_INDEX, 0), float(reward)))
            if len(pending) + self.open_failures.get(task, 0) >= task_size:
                self._close(task)

    def add_failure(self, task: int, task_size: int) -> None:
        """A rollout of ``task`` that failed for good: the task closes once its rows and failures
        account for all ``task_size`` rollouts (pass@k over the rows it has, as ``finish`` would)."""
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
            acc = self.fields[name] = Welford()
        acc.add(x)

    def _close_task(self, pending: list[tuple[int, float]]) -> None:
        rewards = [r for _, r in sorted(pending)]
        for k in range(1, len(rewards) + 1):
            self.pass_sum[k] = self.pass_sum.get(k, 0.0) + pass_at_k(rewards, k)
            self.avg_sum[k] = self.avg_sum.get(k, 0.0) + sum(rewards[:k]) / k
            self.tasks_with_k[k] = self.tasks_with_k.get(k, 0) + 1

    def finish(self) -> None:
        for task in list(self.open_tasks):
            self._close_task(self.open_tasks.pop(task))
        self.open_failures.clear()

    def agent_metrics(self, elapsed_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        for name, acc in sorted(self.fields.items()):
            out[f"mean/{name}"] = acc.mean
            out[f"std/{name}"] = acc.std()
            out[f"min/{name}"] = acc.lo
            out[f"max/{name}"] = acc.hi
        for k in sorted(self.tasks_with_k):
            out[f"pass@{k}/reward"] = 100.0 * self.pass_sum[k] / self.tasks_with_k[k]
            out[f"pass@1[avg-of-{k}]/reward"] = 100.0 * self.avg_sum[k] / self.tasks_with_k[k]
        for name, total in self.tokens.items():
            out[f"total/{name}"] = total
        for stop, n in sorted(self.stops.items()):
            out[f"stops/{stop}"] = n
        out["rollouts_this_run"] = self.live_count
        out["rollouts_per_s"] = self.live_count / elapsed_s if elapsed_s > 0 else None
        out["output_tokens_per_s"] = self.live_output_tokens / elapsed_s if elapsed_s > 0 else None
        return out


class Aggregator:
    """Per-agent aggregates of a whole run (rows of earlier runs included on resume)."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentAggregate] = {}
        self.failures: dict[str, int] = {}
        self.prior_failures: dict[str, int] = {}

    def add(self, row: Mapping[str, Any], task_size: int, *, live: bool = True) -> None:
        name = _agent_of(row)
        agent = self.agents.get(name)
        if agent is None:
            agent = self.agents[name] = AgentAggregate()
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
            agent = self.agents.get(agent_name)
            if agent is None:
                agent = self.agents[agent_name] = AgentAggregate()
            agent.add_failure(task_index, task_size)

    def add_prior_failure(self, agent_name: str) -> None:
        """A rollout that used up its attempts in an earlier run (called from the reader thread:
        its own dict, so no update races with ``add_failure`` on the event loop)."""
        self.prior_failures[agent_name] = self.prior_failures.get(agent_name, 0) + 1

    def result(self, *, run: Mapping[str, Any], servers: Any) -> list[dict[str, Any]]:
        entries = []
        for name in sorted(set(self.agents) | set(self.failures) | set(self.prior_failures)):
            agent = self.agents.get(name) or AgentAggregate()
            agent.finish()
            metrics = agent.agent_metrics(float(run.get("elapsed_s") or 0.0))
            metrics["failures"] = self.failures.get(name, 0) + self.prior_failures.get(name, 0)
            key = {k: v for k, v in metrics.items() if k.startswith(("mean/", "pass@"))}
            entries.append({"agent_ref": {"name": name}, "agent_metrics": metrics, "key_metrics": key,
                            "run": dict(run), "servers": servers})
        return entries


def _agent_of(row: Mapping[str, Any]) -> str:
    ref = row.get("agent_ref")
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        return ref["name"]
    return str((row.get(EXTRAS) or {}).get("agent_name") or "agent")
