"""Cost of the pause gate on the hot path: ``Dispatcher.post`` without a ``PauseControl`` and with
an open one, in-process (a ``send=`` hook that answers at once: no network), rounds interleaved
so machine noise hits both alike; prints JSON (microseconds per call, and the ratio).

    python scripts/bench_pause.py                 # ~10 s
    python scripts/bench_pause.py --calls 50000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.config.schema import RouterConfig, TransportConfig  # noqa: E402
from gym_rollouts.router.dispatcher import Dispatcher  # noqa: E402
from gym_rollouts.router.pause import PauseControl  # noqa: E402
from gym_rollouts.transport.client import HttpTransport  # noqa: E402

URLS = tuple(f"http://127.0.0.1:{9000 + i}/v1" for i in range(4))
BODY = {"model": "m", "messages": []}


async def _answer(url: str, server: str) -> dict:
    return {"ok": True}


async def _round(dispatcher: Dispatcher, calls: int) -> float:
    keys = [f"r{i % 64}" for i in range(calls)]
    started = time.perf_counter_ns()
    for key in keys:
        await dispatcher.post("/chat/completions", BODY, key, send=_answer)
    return (time.perf_counter_ns() - started) / calls / 1000.0


async def main(args: argparse.Namespace) -> dict:
    router = RouterConfig(health_interval_s=0.0)  # no background probes
    transport_cfg = TransportConfig()
    results: dict[str, list[float]] = {"no_pause": [], "pause_open": []}
    async with HttpTransport(transport_cfg, concurrency=4) as http:
        plain = Dispatcher(URLS, http, router, transport_cfg)
        gated = Dispatcher(URLS, http, router, transport_cfg, pause=PauseControl("v1"))
        async with plain, gated:
            for d in (plain, gated):  # warm-up
                await _round(d, 2000)
            for _ in range(args.rounds):
                results["no_pause"].append(await _round(plain, args.calls))
                results["pause_open"].append(await _round(gated, args.calls))
    gate = PauseControl("v1")
    started = time.perf_counter_ns()
    for _ in range(args.calls):
        gate.version_for(URLS[0])
    version_for_us = (time.perf_counter_ns() - started) / args.calls / 1000.0
    median = {k: statistics.median(v) for k, v in results.items()}
    return {"calls_per_round": args.calls, "rounds": args.rounds,
            "post_us_median": {k: round(v, 3) for k, v in median.items()},
            "post_us_all": {k: [round(x, 3) for x in v] for k, v in results.items()},
            "ratio_pause_open_to_no_pause": round(median["pause_open"] / median["no_pause"], 4),
            "version_for_us": round(version_for_us, 4)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
