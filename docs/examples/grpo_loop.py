"""A GRPO-style training loop on gym_rollouts' Python API (docs/library.md).

Each step collects a group of rollouts per prompt (``num_repeats``), computes every rollout's
advantage as its reward minus its group's mean reward, and then "updates" the policy: pause the
model calls, (here: pretend to) load new weights into vLLM, bump the weight version and resume.
The collector stays open across steps: one fleet discovery, the same connections and router.

    python docs/examples/grpo_loop.py --steps 3 --prompts 4 --group-size 8
    python docs/examples/grpo_loop.py policy_base_url=http://localhost:8000/v1 model=vllm_for_training

Without ``policy_base_url`` it runs against the embedded demo backend (a scripted toy model started
for the run). It prints one JSON line per step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import defaultdict
from typing import Any

from gym_rollouts import Collector, load_config


def prompts(step: int, n: int) -> list[dict[str, Any]]:
    """This step's task rows: arithmetic questions an exact-match verifier can score."""
    rows = []
    for i in range(n):
        a, b = 7 * step + i, 3 * i + 1
        rows.append({"responses_create_params": {"input": f"What is {a} + {b}? Answer with the number."},
                     "expected_answer": str(a + b)})
    return rows


def advantages(rewards: list[float]) -> list[float]:
    """GRPO's group-relative advantage (without the std normalisation): reward - group mean."""
    mean = sum(rewards) / len(rewards)
    return [r - mean for r in rewards]


async def update_weights(collector: Collector, version: str, mode: str) -> None:
    """The trainer's weight push, framed by pause/resume: no model call runs on half-loaded weights."""
    await collector.pause(mode)  # "wait": calls in flight finish; "abort": they are redone after resume
    await asyncio.sleep(0.01)  # here a real trainer broadcasts its new weights to the vLLM servers
    await collector.resume(version)  # calls from now on record `version`


async def train(overrides: list[str], *, steps: int, n_prompts: int, group_size: int,
                pause_mode: str = "wait") -> list[dict[str, Any]]:
    cfg = load_config(["resource=exact_match", "progress=off", "weights.version=step-0", *overrides])
    reports = []
    async with Collector(cfg) as collector:
        for step in range(steps):
            groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
            async for row in collector.run(prompts(step, n_prompts), num_repeats=group_size):
                groups[row["_ng_task_index"]].append(row)  # rows arrive as they finish, any order
            batch = []
            for task, rows in sorted(groups.items()):
                for row, advantage in zip(rows, advantages([float(r["reward"]) for r in rows])):
                    calls = row["_gr"].get("calls", [])  # each model call's server and weight version
                    batch.append({"task": task, "reward": row["reward"], "advantage": advantage,
                                  "versions": sorted({c.get("weight_version") or "" for c in calls})})
            # ... a real trainer computes the policy-gradient loss on `batch` here ...
            reports.append({"step": step, "groups": len(groups), "rollouts": len(batch),
                            "group_sizes": sorted({len(rows) for rows in groups.values()}),
                            "mean_reward": sum(b["reward"] for b in batch) / max(1, len(batch)),
                            "max_abs_group_advantage_sum": max(abs(sum(b["advantage"] for b in batch if b["task"] == t))
                                                               for t in groups),
                            "versions": sorted({v for b in batch for v in b["versions"]}),
                            "failures": collector.last_run.failures if collector.last_run else None})
            await update_weights(collector, f"step-{step + 1}", pause_mode)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--pause-mode", choices=["wait", "abort"], default="wait")
    parser.add_argument("overrides", nargs="*", help="config overrides, as for collect (key=value)")
    args = parser.parse_args()
    reports = asyncio.run(train(args.overrides, steps=args.steps, n_prompts=args.prompts,
                                group_size=args.group_size, pause_mode=args.pause_mode))
    for report in reports:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
