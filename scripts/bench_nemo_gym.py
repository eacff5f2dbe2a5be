"""NeMo Gym environment benchmark: ``collect`` through a real NeMo Gym resources server vs our
in-process ``weather`` resource, on the same rows and the same model backend; prints JSON.

The environment is NeMo Gym's ``example_single_tool_call`` (one tool, ``get_weather``; verify
always 1.0), started with NeMo Gym's own ``ng_run`` (scripts/setup_nemo_gym.sh must have run). The
rows are the wheel's ``data/example.jsonl`` repeated (``--repeats``). Both runs use one embedded
vLLM-compatible server (zero latency: the figure is the collector's and the environment's cost,
not a model's) and ``--concurrency`` rollouts in flight. Rounds alternate remote / in-process so
the machine's drift falls on both; the ratio is remote / in-process per round, and the report
gives the median. NeMo Gym's own stack on this task measured ~31 rollouts/s on this machine kind
(shared/nemo_gym_resources.md); ``vs_nemo_gym_stack`` is our remote rate over that figure.

    .venv/bin/python scripts/bench_nemo_gym.py                  # ~2 minutes (the stack start is most of it)
    .venv/bin/python scripts/bench_nemo_gym.py --repeats 400 --rounds 3
    GYM_ROLLOUTS_NEMO_GYM_HEAD_URL=http://127.0.0.1:11000 .venv/bin/python scripts/bench_nemo_gym.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.config.compose import compose_plain  # noqa: E402
from gym_rollouts.config.schema import build_collect_config  # noqa: E402
from gym_rollouts.embedded import EmbeddedConfig, embedded_subprocess  # noqa: E402
from gym_rollouts.engine.session import run_collection  # noqa: E402
from gym_rollouts.testing import nemo_gym as ng  # noqa: E402

ENV = "example_single_tool_call"
NEMO_GYM_STACK_RATE = 31.0  # rollouts/s, NeMo Gym's own stack on this task (shared/nemo_gym_resources.md)


async def rate(base_url: str, src: Path, out: Path, concurrency: int, repeats: int, *resource: str) -> dict[str, Any]:
    cfg = build_collect_config(compose_plain(
        [f"policy_base_url={base_url}", f"input_jsonl_fpath={src}", f"output_jsonl_fpath={out}", "progress=off",
         f"num_samples_in_parallel={concurrency}", f"num_repeats={repeats}", "overwrite=true", *resource],
        cwd=out.parent))
    cpu0, started = time.process_time(), time.perf_counter()
    result = await run_collection(cfg)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    s = result.summary
    return {"rollouts": s["rollouts"], "failures": s["failures"], "mean_reward": s["mean_reward"],
            "rollouts_per_s": s["rollouts_per_s"], "wall_s_with_startup": round(elapsed, 2),
            "client_cpu_ms_per_rollout": round(1000 * cpu / max(s["rollouts"], 1), 3)}


async def rounds(args: argparse.Namespace, base_url: str, env_url: str, src: Path, tmp: Path) -> dict[str, Any]:
    remote_args = ("resource=nemo_gym", f"resource.params.url={env_url}")
    await rate(base_url, src, tmp / "warm.jsonl", args.concurrency, 2, *remote_args)  # warm both sides up
    remote, local, ratios = [], [], []
    for n in range(args.rounds):
        r = await rate(base_url, src, tmp / f"remote{n}.jsonl", args.concurrency, args.repeats, *remote_args)
        w = await rate(base_url, src, tmp / f"local{n}.jsonl", args.concurrency, args.repeats, "resource=weather")
        remote.append(r)
        local.append(w)
        ratios.append(r["rollouts_per_s"] / w["rollouts_per_s"])
    best = statistics.median(r["rollouts_per_s"] for r in remote)
    return {"remote_nemo_gym": remote, "in_process_weather": local,
            "ratio_remote_over_in_process": round(statistics.median(ratios), 3),
            "remote_rollouts_per_s_median": best,
            "nemo_gym_stack_rollouts_per_s": NEMO_GYM_STACK_RATE,
            "vs_nemo_gym_stack": round(best / NEMO_GYM_STACK_RATE, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="repeats of each of the 5 example rows")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    head = os.environ.get(ng.HEAD_URL_ENV)
    stack = ng.connect_stack(head) if head else None
    started = time.perf_counter()
    if stack is None:
        missing = ng.tier_missing()
        if missing:
            print(json.dumps({"error": f"NeMo Gym tier not set up: {missing}"}))
            return 2
        stack = ng.start_stack([ENV], label="bench")
    startup = round(time.perf_counter() - started, 1)
    try:
        src = stack.example_jsonl(ENV)
        with tempfile.TemporaryDirectory() as tmp, embedded_subprocess(EmbeddedConfig(keepalive_timeout=3600.0)) as model:
            report = asyncio.run(rounds(args, model.base_url, stack.env_url(ENV), src, Path(tmp)))
    finally:
        if not head:
            stack.stop()
    rows = len(src.read_bytes().splitlines())
    print(json.dumps({"task": ENV, "rollouts_per_run": rows * args.repeats, "concurrency": args.concurrency,
                      "stack_startup_s": startup, "load_avg_1m": round(os.getloadavg()[0], 2), **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
