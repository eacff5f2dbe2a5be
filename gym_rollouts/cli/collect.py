"""``collect``: run every task through the agent loop and stream rollouts to JSONL.

Exit codes: 0 every rollout succeeded; 2 configuration or input error (nothing sent);
3 the run finished but some rollouts failed (see the failures file); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from gym_rollouts.cli.app import hydra_app
from gym_rollouts.cli.progress import Progress
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import RunResult, run_collection

EXIT_PARTIAL = 3
log = logging.getLogger(__name__)


def print_summary(result: RunResult) -> None:
    s = result.summary
    reward = "n/a" if s["mean_reward"] is None else f"{s['mean_reward']:.4f}"
    print(f"Wrote {s['rollouts']} rollouts to {result.paths.rows}")
    print(f"  rollouts: {s['rollouts']}  failures: {s['failures']}  mean reward: {reward}")
    print(f"  {s['rollouts_per_s']} rollouts/s  {s['output_tokens_per_s']} generated tokens/s  "
          f"({s['elapsed_s']} s, model {result.fleet.model_name})")
    if s["context_length_stops"]:
        print(f"  context-length stops: {s['context_length_stops']} (rows ended 'incomplete')")
    if s["failures"]:
        print(f"  {s['failures']} rollouts failed: see {result.paths.failures}")
    print(f"  metrics: {result.paths.aggregate_metrics}")


def _task(raw: dict[str, Any], hydra_cfg: Any) -> int:
    if not raw.get("output_jsonl_fpath"):
        raw["output_jsonl_fpath"] = str(Path(hydra_cfg.runtime.output_dir) / "rollouts.jsonl")
    cfg = build_collect_config(raw)
    progress = Progress(cfg.progress)
    try:
        result = asyncio.run(run_collection(cfg, on_tick=progress if cfg.progress != "off" else None))
    finally:
        progress.close()
    print_summary(result)
    return EXIT_PARTIAL if result.failures else 0


def main() -> None:
    hydra_app(_task)


if __name__ == "__main__":
    main()
