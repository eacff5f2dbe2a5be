"""Group affinity on real vLLM (CPU, --enable-prefix-caching): prefix-cache hit counters; prints JSON.

Two real vLLM servers (the tiny model of scripts/setup_real_vllm.sh, started as the real-vLLM tier
starts them, plus ``--enable-prefix-caching``). The same grouped workload (``--tasks`` tasks, each
repeated ``--repeats`` times: the repeats share a long prompt unique to their task, as GRPO groups
do) runs through the real Dispatcher twice, with ``router.group_affinity`` on and off; each run's
prompts carry their own tag so the second run cannot reuse the first's cache. Reported per run:
the delta of ``vllm:prefix_cache_hits`` / ``vllm:prefix_cache_queries`` over both servers
(tokens), the hit rate, the ideal hit rate (each task's prompt computed once in the whole fleet),
and the prompt tokens actually computed (queries - hits).

    .venv/bin/python scripts/bench_prefix_cache_vllm.py            # ~3-5 minutes on 2 cores
    .venv/bin/python scripts/bench_prefix_cache_vllm.py --tasks 8 --repeats 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.config.schema import RouterConfig, TransportConfig  # noqa: E402
from gym_rollouts.router.dispatcher import Dispatcher, root_url  # noqa: E402
from gym_rollouts.router.vllm_metrics import parse_metrics  # noqa: E402
from gym_rollouts.testing.real_vllm import launch_vllm, tier_missing, DEFAULT_MODEL_DIR, DEFAULT_PYTHON  # noqa: E402
from gym_rollouts.transport.client import HttpTransport  # noqa: E402

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--repeats", type=int, default=8, help="rollouts per task (a GRPO group)")
    p.add_argument("--workers", type=int, default=8, help="concurrent rollouts")
    p.add_argument("--prompt-words", type=int, default=400, help="words of each task's shared prompt")
    p.add_argument("--max-tokens", type=int, default=4)
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--learn-capacity", action="store_true",
                   help="router.learn_capacity on (off by default here: the two servers are identical and "
                        "share the CPU, so latency differences are contention, not capacity)")
    return p.parse_args(argv)


def task_prompt(run: str, task: int, words: int) -> str:
    body = " ".join(WORDS[(task * 7 + i * (task + 3)) % len(WORDS)] for i in range(words))
    return f"[{run}] task {task}: {body}. Summarise."


async def counters(http: HttpTransport, urls: list[str]) -> list[tuple[float, float]]:
    out = []
    for url in urls:
        _, raw = await http.get(root_url(url) + "/metrics", timeout_s=10.0)
        m = parse_metrics(raw.decode())
        out.append((m.prefix_cache_hits or 0.0, m.prefix_cache_queries or 0.0))
    return out


async def run(urls: list[str], model: str, affinity: bool, args: argparse.Namespace) -> dict[str, Any]:
    tag = "affinity" if affinity else "no-affinity"
    rcfg = RouterConfig(group_affinity=affinity, health_interval_s=0, learn_capacity=args.learn_capacity)
    tcfg = TransportConfig(read_timeout_s=300.0, call_timeout_s=600.0)
    jobs: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for t in range(args.tasks):  # repeats of a task are consecutive, as the engine expands them
        for r in range(args.repeats):
            jobs.put_nowait((t, r))
    async with HttpTransport(tcfg, concurrency=args.workers) as http, Dispatcher(tuple(urls), http, rcfg, tcfg) as d:
        before = await counters(http, urls)

        async def worker() -> None:
            while not jobs.empty():
                t, r = jobs.get_nowait()
                key = f"{tag}-{t}-{r}"
                body = {"model": model, "max_tokens": args.max_tokens, "temperature": 1.0,
                        "messages": [{"role": "user", "content": task_prompt(tag, t, args.prompt_words)}]}
                try:
                    await d.post("/chat/completions", body, key, group=f"{tag}-{t}")
                finally:
                    d.forget(key)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(args.workers):
                tg.create_task(worker())
        seconds = time.perf_counter() - started
        after = await counters(http, urls)
        summary = d.summary()
        rows = d.stats()
        calls = [row["completed"] for row in rows]
        keys = ("failed", "retried", "downs", "client_errors", "mean_latency_ms")
        health = [{k: row[k] for k in keys} for row in rows]
    hits = sum(a[0] - b[0] for a, b in zip(after, before))
    queries = sum(a[1] - b[1] for a, b in zip(after, before))
    ideal = (args.repeats - 1) / args.repeats  # each prompt computed once (block rounding aside)
    return {"group_affinity": affinity, "seconds": round(seconds, 2), "calls_per_server": calls, "servers": health,
            "retries_by_kind": summary["retries_by_kind"],
            "prefix_cache_hits": hits, "prefix_cache_queries": queries,
            "computed_prompt_tokens": queries - hits,
            "hit_rate": round(hits / queries, 4) if queries else None,
            "hit_rate_over_ideal": round(hits / queries / ideal, 4) if queries else None,
            "group_hits": summary["group_hits"], "group_breaks": summary["group_breaks"],
            **({"capacity": summary["capacity"]} if "capacity" in summary else {})}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = tier_missing(DEFAULT_PYTHON, DEFAULT_MODEL_DIR)
    if missing:
        print(json.dumps({"skipped": missing}))
        return 1
    with contextlib.ExitStack() as stack:
        servers = [launch_vllm(served_name="tiny", extra_args=["--enable-prefix-caching"]) for _ in range(2)]
        for s in servers:
            stack.callback(s.stop)
        for s in servers:
            s.wait_healthy(args.startup_timeout)
        urls = [s.base_url for s in servers]
        out: dict[str, Any] = {"servers": 2, "tasks": args.tasks, "repeats": args.repeats, "workers": args.workers,
                               "ideal_hit_rate": round((args.repeats - 1) / args.repeats, 4), "runs": []}
        for affinity in (True, False):
            out["runs"].append(asyncio.run(run(urls, "tiny", affinity, args)))
        on, off = out["runs"]
        if off["computed_prompt_tokens"]:
            out["computed_tokens_ratio_affinity_vs_not"] = round(on["computed_prompt_tokens"]
                                                                 / off["computed_prompt_tokens"], 4)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
