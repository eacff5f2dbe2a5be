"""Group affinity and learned capacity on simulated GPU servers: prefix-cache hits, makespan; prints JSON.

A fleet of embedded servers in the vLLM-like step simulation (gym_rollouts/embedded/kv_sim.py: each
step costs ``--decode-ms`` plus ``--prefill-ms-per-token`` per prompt token missing the prefix cache,
a full KV cache preempts), one of them ``--slow-factor`` times slower in both. A GRPO-like workload:
``--tasks`` tasks x ``--group`` rollouts (repeats consecutive, as the engine expands them; the repeats
share a task prompt of ``--prompt-chars`` characters, ~1 token each), ``--turns`` calls per rollout
(the conversation grows), ``--workers`` concurrent rollouts, each call ``--max-tokens`` tokens.
Per policy, ratios measured in the same run:

- hit rate / ideal hit rate: prefix-cache hits / queries (tokens, ``/metrics`` deltas over the
  fleet), the ideal being the same workload's on one server with an unlimited cache (each shared
  prefix computed once in the whole fleet);
- makespan / capacity-weighted ideal: the ideal is the work (decode steps at full batches plus
  the ideal prefill) in fast-server seconds divided by the fleet's summed speed (fast = 1).

Since the strict ideal charges only the ideal prefill, a policy's extra prefill (its hit-rate gap)
and its balance both show in that one ratio. ``makespan_over_work_done`` separates them: it divides
by the same ideal computed with the prefill the run really did (its own prefix-cache misses), so it
measures how well the work was spread and the batches kept full, whatever the cache did.

The workers tell the router how many rollouts are not started yet (``Dispatcher.count_unstarted``,
as the engine does), which its tail rules read; the ``ours_no_tail`` and ``ours_previous`` rows
run without that count. ``ours_untried_slack`` gives a group its slack on a server that has not
answered yet (router/policy.py: off by default with learned weights).

    .venv/bin/python scripts/bench_groups.py                  # groups of 8 and 16, ~4 minutes on 2 cores
    .venv/bin/python scripts/bench_groups.py --groups 8 --policies ours,today
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
from gym_rollouts.embedded import EmbeddedConfig, embedded_subprocess  # noqa: E402
from gym_rollouts.router.dispatcher import Dispatcher, root_url  # noqa: E402
from gym_rollouts.router.vllm_metrics import parse_metrics  # noqa: E402
from gym_rollouts.transport.client import HttpTransport  # noqa: E402

# name -> RouterConfig overrides; "hand" gets router.weights from the known speeds
POLICIES: dict[str, dict[str, Any]] = {
    "ours": {},  # group affinity + learned capacity (the defaults)
    "ours+hand_weights": {"weights": "hand"},
    "ours+hand_weights_no_tail": {"weights": "hand", "tail": False},
    "ours_bounds_16_16": {"group_max_imbalance": 16.0, "overload_min_gap": 16},  # the defaults before 24 / 24
    "ours_bounds_4_8": {"group_max_imbalance": 4.0, "overload_min_gap": 8},  # the defaults before 16 / 16
    "ours_no_tail": {"tail": False},  # the router not told the run's unstarted count (its tail rules off)
    "ours_power_2": {"power": 2.0},  # learned weights with the estimator's power 2 (the default before 1)
    "ours_previous": {"power": 2.0, "tail": False, "cautious_untried": False},  # before the tail rules
    "ours_untried_slack": {"cautious_untried": False},  # group slack also on servers not answered yet
    "ours_equal_weights": {"learn_capacity": False},  # group affinity and the tail rules, weights all 1
    "ours_no_group": {"group_affinity": False},  # learned capacity alone
    "today": {"group_affinity": False, "learn_capacity": False, "tail": False},  # before issue 14
    "hash": {"policy": "hash", "group_affinity": False, "learn_capacity": False},
    "round_robin": {"policy": "round_robin", "group_affinity": False, "learn_capacity": False},
}
WORDS = "solve the task step by step and check every intermediate result against the tool output".split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--servers", type=int, default=4)
    p.add_argument("--slots", type=int, default=8, help="max_num_seqs of each server")
    p.add_argument("--decode-ms", type=float, default=4.0, help="one engine step of a fast server")
    p.add_argument("--prefill-ms-per-token", type=float, default=0.05, help="of a fast server")
    p.add_argument("--kv-cache-tokens", type=int, default=24000)
    p.add_argument("--slow-factor", type=float, default=4.0)
    p.add_argument("--groups", default="8,16", help="group sizes, comma-separated")
    p.add_argument("--rollouts", type=int, default=256, help="rollouts per group size (tasks = rollouts / group)")
    p.add_argument("--turns", type=int, default=2)
    p.add_argument("--prompt-chars", type=int, default=1500)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--workers", type=int, default=48)
    p.add_argument("--group-max-imbalance", type=float, default=None,
                   help="override router.group_max_imbalance (every policy)")
    p.add_argument("--overload-min-gap", type=int, default=None,
                   help="override router.overload_min_gap (every policy)")
    p.add_argument("--policies", default=",".join(POLICIES))
    return p.parse_args(argv)


def prompt(run: str, task: int, chars: int) -> str:
    text, i = f"[{run}] task {task}:", 0
    while len(text) < chars:
        text += " " + WORDS[(task + i * 5) % len(WORDS)] + str(i % 7)
        i += 1
    return text[:chars]


async def counters(http: HttpTransport, urls: list[str]) -> dict[str, float]:
    total = {"hits": 0.0, "queries": 0.0, "preemptions": 0.0}
    for url in urls:
        _, raw = await http.get(root_url(url) + "/metrics", timeout_s=10.0)
        m = parse_metrics(raw.decode())
        total["hits"] += m.prefix_cache_hits or 0.0
        total["queries"] += m.prefix_cache_queries or 0.0
        total["preemptions"] += m.value("vllm:num_preemptions_total") or 0.0
    return total


async def workload(d: Dispatcher, run: str, group: int, args: argparse.Namespace, tail: bool = True) -> float:
    jobs: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for t in range(args.rollouts // group):
        for r in range(group):
            jobs.put_nowait((t, r))
    if tail:  # as the engine does: the count of rollouts not started yet
        d.count_unstarted(jobs.qsize)

    async def worker() -> None:
        while not jobs.empty():
            t, r = jobs.get_nowait()
            key = f"{run}-{t}-{r}"
            messages = [{"role": "user", "content": prompt(run, t, args.prompt_chars)}]
            try:
                for turn in range(args.turns):
                    body = {"model": "gym-tiny", "max_tokens": args.max_tokens, "messages": messages}
                    _, reply = await d.post("/chat/completions", body, key, group=f"{run}-{t}")
                    messages = messages + [{"role": "assistant", "content": reply["choices"][0]["message"]["content"]
                                            or ""}, {"role": "user", "content": f"Rollout {r}: check it again."}]
            finally:
                d.forget(key)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(args.workers):
            tg.create_task(worker())
    return time.perf_counter() - started


async def one(urls: list[str], run: str, group: int, overrides: dict[str, Any], hand: tuple[float, ...],
              args: argparse.Namespace) -> dict[str, Any]:
    kw = dict(overrides)
    tail, power, cautious = kw.pop("tail", True), kw.pop("power", None), kw.pop("cautious_untried", None)
    if kw.get("weights") == "hand":
        kw["weights"] = hand
    if args.group_max_imbalance is not None:
        kw["group_max_imbalance"] = args.group_max_imbalance
    if args.overload_min_gap is not None:
        kw["overload_min_gap"] = args.overload_min_gap
    rcfg, tcfg = RouterConfig(health_interval_s=0, **kw), TransportConfig(read_timeout_s=300.0, call_timeout_s=600.0)
    async with HttpTransport(tcfg, concurrency=args.workers) as http, Dispatcher(tuple(urls), http, rcfg, tcfg) as d:
        if power is not None and d.capacity is not None:
            d.capacity.power = power
        if cautious is not None:
            d.policy.cautious_untried = cautious
        before = await counters(http, urls)
        seconds = await workload(d, run, group, args, tail)
        after = await counters(http, urls)
        stats, summary = d.stats(), d.summary()
    delta = {k: after[k] - before[k] for k in after}
    return {"seconds": seconds, **delta, "calls_per_server": [row["completed"] for row in stats],
            "final_weights": [round(row["weight"], 3) for row in stats],
            "group_hits": summary["group_hits"], "group_breaks": summary["group_breaks"],
            "affinity_breaks": summary["affinity_breaks"], "tail_skips": summary["tail_skips"]}


def sim(args: argparse.Namespace, factor: float, slots: int, kv: int) -> EmbeddedConfig:
    return EmbeddedConfig(latency_per_token_ms=args.decode_ms * factor, max_num_seqs=slots, kv_cache_tokens=kv,
                          prefill_ms_per_token=args.prefill_ms_per_token * factor, max_model_len=4096)


async def bench(args: argparse.Namespace, urls: list[str], ideal_url: str) -> dict[str, Any]:
    speeds = [1.0] * (args.servers - 1) + [1.0 / args.slow_factor]
    hand = tuple(speeds)
    out: dict[str, Any] = {}
    for group in (int(g) for g in args.groups.split(",")):
        ref = await one([ideal_url], f"ideal{group}", group, {"learn_capacity": False}, (), args)
        ideal_hit = ref["hits"] / ref["queries"]
        calls = args.rollouts * args.turns
        decode_ms = calls * args.max_tokens * args.decode_ms / args.slots  # full batches, fast-server ms
        work_ms = decode_ms + ref["queries"] * (1 - ideal_hit) * args.prefill_ms_per_token
        ideal_s = work_ms / 1000.0 / sum(speeds)
        rows: dict[str, Any] = {}
        for name in filter(None, args.policies.split(",")):
            r = await one(urls, f"{name}{group}", group, POLICIES[name], hand, args)
            hit = r["hits"] / r["queries"] if r["queries"] else 0.0
            done_ms = decode_ms + (r["queries"] - r["hits"]) * args.prefill_ms_per_token
            rows[name] = {"hit_rate_over_ideal": round(hit / ideal_hit, 3),
                          "makespan_over_ideal": round(r["seconds"] / ideal_s, 3),
                          "makespan_over_work_done": round(r["seconds"] / (done_ms / 1000.0 / sum(speeds)), 3),
                          "hit_rate": round(hit, 4), "makespan_s": round(r["seconds"], 3),
                          "preemptions": r["preemptions"], "calls_per_server": r["calls_per_server"],
                          "final_weights": r["final_weights"], "group_hits": r["group_hits"],
                          "group_breaks": r["group_breaks"], "affinity_breaks": r["affinity_breaks"],
                          "tail_skips": r["tail_skips"]}
        out[f"group_{group}"] = {"ideal_hit_rate": round(ideal_hit, 4), "ideal_makespan_s": round(ideal_s, 3),
                                 "policies": rows}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factors = [1.0] * (args.servers - 1) + [args.slow_factor]
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(embedded_subprocess(sim(args, f, args.slots, args.kv_cache_tokens),
                                                         startup_timeout=60.0)) for f in factors]
        # the ideal-hit reference: one server, unlimited slots and KV, ~free steps (hit counting only)
        ref = stack.enter_context(embedded_subprocess(EmbeddedConfig(
            latency_per_token_ms=0.01, prefill_ms_per_token=1e-5, max_model_len=4096), startup_timeout=60.0))
        result = asyncio.run(bench(args, [p.base_url for p in procs], ref.base_url))
    out = {"fleet": {"servers": args.servers, "slots": args.slots, "decode_ms": args.decode_ms,
                     "prefill_ms_per_token": args.prefill_ms_per_token, "kv_cache_tokens": args.kv_cache_tokens,
                     "slow_factor": args.slow_factor},
           "workload": {"rollouts": args.rollouts, "turns": args.turns, "prompt_chars": args.prompt_chars,
                        "max_tokens": args.max_tokens, "workers": args.workers}, **result}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
