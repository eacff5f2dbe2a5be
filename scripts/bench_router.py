"""Router benchmark: makespan on a heterogeneous fleet, stickiness, decision time; prints JSON.

(a) A fleet of embedded vLLM-compatible servers as child processes, each generating at most
    ``--slots`` requests at once (like vLLM's --max-num-seqs) for ``--latency-ms`` each; one of
    them ``--slow-factor`` times slower. The same multi-turn workload (``--rollouts`` rollouts of
    ``--turns`` calls, conversations growing turn by turn, ``--workers`` concurrent rollouts) runs
    through the real Dispatcher under each policy. Makespan is reported as a ratio to the ideal
    capacity-weighted makespan: calls / sum over servers of (slots / latency).
(b) Stickiness: the share of follow-up turns answered by the server of the rollout's first turn,
    and the prefix-cache hit rate the servers report (``vllm:prefix_cache_hits/queries``).
(c) Decision time of ``RoutingPolicy.choose`` in microseconds, in-process.

    python scripts/bench_router.py                # ~1 minute on 2 cores
    python scripts/bench_router.py --repeats 3      # the figures in docs/router.md
    python scripts/bench_router.py --rollouts 120 --policies sticky_least_loaded,hash
    python scripts/bench_router.py --decisions-only # (c) alone, a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.config.schema import RouterConfig, TransportConfig  # noqa: E402
from gym_rollouts.embedded import EmbeddedConfig, embedded_subprocess  # noqa: E402
from gym_rollouts.router.capacity import CapacityEstimator  # noqa: E402
from gym_rollouts.router.dispatcher import Dispatcher, root_url  # noqa: E402
from gym_rollouts.router.policy import RoutingPolicy, ServerState  # noqa: E402
from gym_rollouts.router.vllm_metrics import parse_metrics  # noqa: E402
from gym_rollouts.transport.client import HttpTransport  # noqa: E402

DEFAULT_POLICIES = ("sticky_least_loaded", "sticky_least_loaded+no_tail", "sticky_least_loaded+power_2",
                    "sticky_least_loaded+power_2+no_tail", "sticky_least_loaded+equal",
                    "sticky_least_loaded+weights", "sticky_least_loaded+metrics", "hash", "round_robin")
FILLER = ("Solve the task step by step, use the calculator tool when arithmetic is needed and give "
          "the final answer on the last line. ") * 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--servers", type=int, default=4)
    p.add_argument("--slots", type=int, default=4, help="max_num_seqs of each server")
    p.add_argument("--latency-ms", type=float, default=50.0, help="per-call latency of a fast server")
    p.add_argument("--slow-factor", type=float, default=4.0, help="the last server is this much slower")
    p.add_argument("--rollouts", type=int, default=240)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--workers", type=int, default=32, help="concurrent rollouts")
    p.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                   help="comma-separated; +weights: hand capacity weights, +equal: equal weights (learned "
                        "capacity off), +metrics: use_metrics, +no_tail: the router not told the unstarted count "
                        "(its tail rules off), +power_2: the estimator's power 2 (the default before 1); "
                        "plain: weights learned (router/capacity.py); extras combine: a+no_tail+weights")
    p.add_argument("--repeats", type=int, default=1, help="runs per policy (the median makespan is reported)")
    p.add_argument("--decisions", type=int, default=200_000, help="per decision-time measurement")
    p.add_argument("--decisions-only", action="store_true", help="only (c): no servers, no workload")
    return p.parse_args(argv)


def conversation(run: str, rollout: int, replies: list[str]) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": f"[{run}] task {rollout}: what is {rollout} * 7 + 3? {FILLER}"}]
    for reply in replies:
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Check it once more."}]
    return messages


async def run_workload(dispatcher: Dispatcher, run: str, args: argparse.Namespace,
                       tail: bool = True) -> tuple[float, list[list[str]]]:
    """Makespan (s) and, per rollout, the server of each turn."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for r in range(args.rollouts):
        queue.put_nowait(r)
    if tail:  # as the engine does: the count of rollouts not started yet
        dispatcher.count_unstarted(queue.qsize)
    servers: list[list[str]] = [[] for _ in range(args.rollouts)]

    async def worker() -> None:
        while not queue.empty():
            r = queue.get_nowait()
            replies: list[str] = []
            for _ in range(args.turns):
                body = {"model": "gym-tiny", "max_tokens": 16, "messages": conversation(run, r, replies)}
                server, reply = await dispatcher.post("/chat/completions", body, f"{run}-{r}")
                replies.append(reply["choices"][0]["message"]["content"] or "")
                servers[r].append(server)
            dispatcher.forget(f"{run}-{r}")

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(args.workers):
            tg.create_task(worker())
    return time.perf_counter() - started, servers


async def prefix_counters(http: HttpTransport, urls: list[str]) -> tuple[float, float]:
    """Prefix-cache (hits, queries) summed over the fleet's ``/metrics`` (the shared parser)."""
    hits = queries = 0.0
    for url in urls:
        _, raw = await http.get(root_url(url) + "/metrics", timeout_s=5.0)
        m = parse_metrics(raw.decode())
        hits += m.prefix_cache_hits or 0.0
        queries += m.prefix_cache_queries or 0.0
    return hits, queries


async def bench_policy(name: str, urls: list[str], weights: tuple[float, ...], args: argparse.Namespace,
                       ideal_s: float) -> dict[str, Any]:
    kind, *extras = name.split("#")[0].split("+")
    rcfg = RouterConfig(policy=kind, weights=weights if "weights" in extras else (),
                        use_metrics="metrics" in extras, metrics_interval_s=0.2, learn_capacity="equal" not in extras)
    tcfg = TransportConfig(read_timeout_s=120.0)
    async with HttpTransport(tcfg, concurrency=args.workers) as http, Dispatcher(tuple(urls), http, rcfg, tcfg) as d:
        hits0, queries0 = await prefix_counters(http, urls)
        if "power_2" in extras and d.capacity is not None:
            d.capacity.power = 2.0
        makespan, per_rollout = await run_workload(d, name, args, tail="no_tail" not in extras)
        hits1, queries1 = await prefix_counters(http, urls)
        stats = d.stats()
    follow_ups = sum(len(s) - 1 for s in per_rollout)
    stuck = sum(1 for s in per_rollout for later in s[1:] if later == s[0])
    return {
        "makespan_s": round(makespan, 3),
        "ratio_to_ideal": round(makespan / ideal_s, 3),
        "stickiness": round(stuck / follow_ups, 4) if follow_ups else None,
        "prefix_cache_hit_rate": round((hits1 - hits0) / (queries1 - queries0), 4) if queries1 > queries0 else None,
        "calls_per_server": [row["completed"] for row in stats],
        "final_weights": [row["weight"] for row in stats],
        "p99_latency_ms_per_server": [row["p99_latency_ms"] for row in stats],
    }


def decision_time(n_servers: int, kind: str, decisions: int) -> dict[str, float]:
    """Mean microseconds per ``choose``: follow-up calls of live rollouts, and new rollouts."""
    rng = random.Random(0)
    servers = [ServerState(url=f"http://s{i}/v1", in_flight=rng.randrange(0, 16)) for i in range(n_servers)]
    policy = RoutingPolicy(servers, kind)
    live = [f"r{i}" for i in range(1024)]
    for key in live:
        policy.choose(key)
    keys = [live[rng.randrange(len(live))] for _ in range(decisions)]
    t0 = time.perf_counter_ns()
    for key in keys:
        policy.choose(key)
    follow = (time.perf_counter_ns() - t0) / decisions / 1000
    fresh = [f"n{i}" for i in range(decisions)]
    t0 = time.perf_counter_ns()
    for key in fresh:
        policy.choose(key)
        policy.forget(key)
    new = (time.perf_counter_ns() - t0) / decisions / 1000
    t0 = time.perf_counter_ns()
    for i, key in enumerate(fresh):  # groups of 8 consecutive new rollouts
        policy.choose(key, group=f"g{i >> 3}")
        policy.forget(key)
    grouped = (time.perf_counter_ns() - t0) / decisions / 1000
    # the tail rules on (an unstarted count, latency estimates with one server 4x slower)
    policy.latency, policy.unstarted = [0.05] * (n_servers - 1) + [0.2], lambda: 100
    t0 = time.perf_counter_ns()
    for i, key in enumerate(fresh):
        policy.choose(key, group=f"g{i >> 3}")
        policy.forget(key)
    tail = (time.perf_counter_ns() - t0) / decisions / 1000
    estimator = CapacityEstimator(servers)
    t0 = time.perf_counter_ns()
    for i in range(decisions):
        estimator.observe(i % n_servers, 0.05 + (i & 7) * 0.001)
    observe = (time.perf_counter_ns() - t0) / decisions / 1000
    return {"follow_up_us": round(follow, 3), "new_rollout_us": round(new, 3),
            "new_grouped_rollout_us": round(grouped, 3), "new_rollout_tail_rules_us": round(tail, 3),
            "capacity_observe_us": round(observe, 3)}


async def fleet_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """(a) and (b): every policy on the same heterogeneous fleet."""
    latencies = [args.latency_ms] * (args.servers - 1) + [args.latency_ms * args.slow_factor]
    capacity = sum(args.slots / (ms / 1000.0) for ms in latencies)  # calls per second
    calls = args.rollouts * args.turns
    ideal_s = calls / capacity
    weights = tuple(round(latencies[0] / ms, 4) for ms in latencies)
    out: dict[str, Any] = {
        "fleet": {"servers": args.servers, "slots_per_server": args.slots, "latency_ms": latencies,
                  "capacity_calls_per_s": round(capacity, 2), "weights_for_weighted_run": list(weights)},
        "workload": {"rollouts": args.rollouts, "turns": args.turns, "calls": calls, "workers": args.workers},
        "ideal_makespan_s": round(ideal_s, 3),
        "policies": {},
    }
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(embedded_subprocess(
            EmbeddedConfig(latency_ms=ms, max_num_seqs=args.slots), startup_timeout=60.0)) for ms in latencies]
        urls = [p.base_url for p in procs]
        for name in filter(None, args.policies.split(",")):
            runs = [await bench_policy(f"{name}#{i}" if i else name, urls, weights, args, ideal_s)
                    for i in range(args.repeats)]
            runs.sort(key=lambda r: r["makespan_s"])
            out["policies"][name] = {**runs[len(runs) // 2], "ratios_all_runs": [r["ratio_to_ideal"] for r in runs]}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = {} if args.decisions_only else asyncio.run(fleet_benchmark(args))
    out["decision_time"] = {f"{kind}/{n}_servers": decision_time(n, kind, args.decisions)
                            for kind in ("sticky_least_loaded", "hash", "round_robin") for n in (4, 16, 64)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
