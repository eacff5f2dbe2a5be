"""The ``run`` section of merged shard outputs' aggregate metrics.

Per-agent metrics (means, pass@k, token totals, stop reasons) are recomputed from the merged rows
by the engine's own ``Aggregator`` (engine/metrics.py), so a merged file has exactly the shape
of a single run's. What rows cannot tell (time and throughput) comes from the shards' metrics:
``elapsed_s`` is the longest shard, rates are the sum over shards (their combined throughput while
they ran side by side).
"""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.sweep.metrics_view import key_figures


def _sum(figures: list[Mapping[str, Any]], key: str) -> float:
    return sum(float(f.get(key) or 0.0) for f in figures)


def merged_run(*, expected: int, rollouts: int, failures: int, failed_attempts: int, skipped_inputs: int,
               mean_reward: float | None, shard_docs: list[Any], shard_rows: list[str]) -> dict[str, Any]:
    """The merged ``run`` dict (the engine's ``run`` keys): counts and the mean reward from the merge
    itself, time and rates from the shards."""
    figures = [key_figures(doc) for doc in shard_docs]
    return {
        "total": expected,
        "rollouts": rollouts,
        "rollouts_this_run": rollouts,
        "resumed_rows": 0,
        "failures": failures,
        "failed_attempts_this_run": failed_attempts,  # every shard's failure rows (of all its runs)
        "skipped_inputs": skipped_inputs,
        "mean_reward": mean_reward,
        # the engine's run-level rate (rollouts completed by that run / its wall time, from each
        # shard's run section), summed: the fleet's combined rate while the shards ran side by side
        "rollouts_per_s": round(_sum(figures, "rollouts_per_s"), 2),
        "output_tokens_per_s": round(_sum(figures, "output_tokens_per_s"), 1),
        "elapsed_s": round(max((float(f.get("elapsed_s") or 0.0) for f in figures), default=0.0), 3),
        "merged_from": shard_rows,
        "shards": [{"rows": rows, **{k: f.get(k) for k in ("rollouts", "failures", "rollouts_per_s", "elapsed_s")}}
                   for rows, f in zip(shard_rows, figures)],
    }


def shard_models(shard_docs: list[Any]) -> Any:
    """The model name the shards report (one name, a sorted list if they differ, or None)."""
    names = set()
    for doc in shard_docs:
        entries = doc if isinstance(doc, list) else [doc]
        for entry in entries:
            if isinstance(entry, Mapping):
                run = entry.get("run") if isinstance(entry.get("run"), Mapping) else entry
                if isinstance(run.get("model"), str):
                    names.add(run["model"])
    return names.pop() if len(names) == 1 else (sorted(names) or None)
