"""Benchmarks of the Python API (gym_rollouts/api/); prints one JSON object (ratios in one run).

- stream: rollouts/s of ``Collector.run`` (rows handed over as dicts, no output file) divided by
  the rate of ``run_collection`` (the ``collect`` path: the same rows from a JSONL file, written
  to an output JSONL) on the same open zero-latency embedded server. Rounds alternate; ``ratio``
  is the median of stream / mean(neighbouring file rates). Both exclude start-up: the
  ``Collector`` is opened once before its rounds; ``run_collection`` opens its session per round
  (its fleet check is part of what it costs: that is what ``steps`` below isolates).
- steps: a training loop of ``--steps`` small steps (``--step-rows`` rows each): one ``Collector``
  running once per step, against one ``run_collection`` per step (a new session, fleet check and
  connections each time). ``speedup`` = time of the per-step sessions / time of the one collector.

    python scripts/bench_library.py --rows 2000 --rounds 3 --steps 20 --step-rows 16
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.api import Collector, load_config  # noqa: E402
from gym_rollouts.embedded import EmbeddedConfig, launch_embedded  # noqa: E402
from gym_rollouts.engine.session import run_collection  # noqa: E402


def rows_of(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"responses_create_params": {"input": f"What is {i} + {i % 97}? Answer with the number.",
                                         "max_output_tokens": 32},
             "expected_answer": str(i + i % 97), "task_id": f"t{i}"} for i in range(start, start + n)]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


async def file_run(cfg: Any, folder: Path, rows: list[dict[str, Any]], tag: str) -> float:
    source = write_rows(folder / f"in_{tag}.jsonl", rows)
    run_cfg = dataclasses.replace(cfg, input_jsonl_fpath=str(source),
                                  output_jsonl_fpath=str(folder / f"out_{tag}.jsonl"))
    started = time.perf_counter()
    result = await run_collection(run_cfg)
    assert result.summary["rollouts"] == len(rows), result.summary
    return time.perf_counter() - started


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    async with launch_embedded(EmbeddedConfig()) as server:
        cfg = load_config([f"policy_base_url={server.base_url}", "resource=exact_match", "progress=off",
                           "num_samples_in_parallel=100"])
        rows = rows_of(args.rows)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            file_rates, stream_rates = [], []
            async with Collector(cfg) as c:
                for r in range(args.rounds):
                    file_rates.append(len(rows) / await file_run(cfg, folder, rows, f"r{r}"))
                    started = time.perf_counter()
                    n = len([row async for row in c.run(rows)])
                    stream_rates.append(n / (time.perf_counter() - started))
                file_rates.append(len(rows) / await file_run(cfg, folder, rows, "last"))
                ratios = [s / ((file_rates[i] + file_rates[i + 1]) / 2) for i, s in enumerate(stream_rates)]
                step_rows = [rows_of(args.step_rows, start=1000 * s) for s in range(args.steps)]
                started = time.perf_counter()
                for batch in step_rows:
                    assert len([row async for row in c.run(batch)]) == len(batch)
                one_collector = time.perf_counter() - started
            started = time.perf_counter()
            for s, batch in enumerate(step_rows):
                await file_run(cfg, folder, batch, f"s{s}")
            per_step_sessions = time.perf_counter() - started
    return {
        "stream": {"rows": args.rows, "rounds": args.rounds,
                   "file_rollouts_per_s": [round(x, 1) for x in file_rates],
                   "stream_rollouts_per_s": [round(x, 1) for x in stream_rates],
                   "ratio": round(statistics.median(ratios), 3)},
        "steps": {"steps": args.steps, "rows_per_step": args.step_rows, "one_collector_s": round(one_collector, 3),
                  "session_per_step_s": round(per_step_sessions, 3),
                  "speedup": round(per_step_sessions / one_collector, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-rows", type=int, default=16)
    print(json.dumps(asyncio.run(bench(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
