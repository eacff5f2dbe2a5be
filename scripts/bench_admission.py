"""Admission benchmark: makespan and preemptions of ``num_samples_in_parallel: auto`` against fixed
concurrencies, in one run; prints JSON.

A fleet of embedded vLLM-compatible servers as child processes, each with a simulated KV cache
(``--kv-cache-tokens``: a full cache preempts the most recent sequence, which later pays its
prefill again) of a different size (``--kv-seqs``: how many of this workload's sequences fit on
each server), prefill costing ``--prefill-ms-per-token`` per uncached prompt token and decoding
``--ms-per-token`` per generated token. The same workload (``--rollouts`` single-turn rollouts of
distinct ~``--prompt-tokens``-token prompts) runs through the real engine (``run_collection``,
in-process) once per setting: ``auto`` and each fixed ``num_samples_in_parallel`` in ``--fixed``.
The fleet is restarted for every setting (no cache carried over). Reported per setting: makespan
(the run's elapsed seconds), preemptions (``vllm:num_preemptions_total`` summed over the fleet),
failures; for ``auto`` also each server's final admission limit; and the ratios
``auto / best fixed`` and ``auto / worst fixed`` of the makespans.

    python scripts/bench_admission.py                              # ~2-3 minutes on 2 cores
    python scripts/bench_admission.py --fixed 8,32 --rollouts 120    # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.config.schema import build_collect_config, TransportConfig  # noqa: E402
from gym_rollouts.embedded import EmbeddedConfig, launch_embedded  # noqa: E402
from gym_rollouts.engine.session import run_collection  # noqa: E402
from gym_rollouts.router.vllm_metrics import parse_metrics  # noqa: E402
from gym_rollouts.transport.client import HttpTransport  # noqa: E402

MAX_MODEL_LEN = 1024  # the simulated KV caches must hold at least one whole context
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kv-seqs", default="6,12,24", help="sequences of this workload that fit per server (one per server)")
    p.add_argument("--fixed", default="4,8,16,32,64,128", help="fixed num_samples_in_parallel settings to compare")
    p.add_argument("--rollouts", type=int, default=240)
    p.add_argument("--prompt-tokens", type=int, default=60, help="approximate prompt length (chars ~ tokens) of each row")
    p.add_argument("--max-output-tokens", type=int, default=128, help="the scripted model answers ~65 tokens at most")
    p.add_argument("--latency-ms", type=float, default=20.0, help="fixed cost of every request")
    p.add_argument("--ms-per-token", type=float, default=2.0, help="decode cost per generated token")
    p.add_argument("--prefill-ms-per-token", type=float, default=0.1, help="prefill cost per uncached prompt token")
    p.add_argument("--metrics-interval-s", type=float, default=0.2, help="router.metrics_interval_s for auto")
    p.add_argument("--admission", default="", help="extra router.admission overrides, e.g. max=32,decrease=0.5")
    return p.parse_args(argv)


def rows(path: Path, n: int, prompt_tokens: int, max_output_tokens: int, salt: str) -> Path:
    """``n`` single-turn rows, each prompt distinct from its first words (no prefix shared across
    rollouts or settings) and about ``prompt_tokens`` long."""
    with path.open("wb") as fh:
        for i in range(n):
            words = " ".join(f"{WORDS[(i + k) % len(WORDS)]}{(i * 7 + k) % 101}" for k in range(prompt_tokens // 6))
            words = words[:prompt_tokens]  # the embedded byte tokenizer: about one token per character
            fh.write(orjson.dumps({"responses_create_params": {
                "input": f"[{salt} {i}] {words}",
                "max_output_tokens": max_output_tokens},
                "expected_answer": str(i + 1), "task_id": f"{salt}-{i}"}) + b"\n")
    return path


async def preemptions(http: HttpTransport, urls: list[str]) -> float:
    total = 0.0
    for url in urls:
        status, raw = await http.get(url.removesuffix("/v1") + "/metrics", timeout_s=5.0, control=True)
        if status == 200:
            total += parse_metrics(raw.decode()).preemptions or 0.0
    return total


async def probe_seq_tokens(args: argparse.Namespace, tmp: Path) -> int:
    """Tokens one rollout of this workload holds (prompt + output), measured on an unlimited server."""
    src = rows(tmp / "probe.jsonl", 4, args.prompt_tokens, args.max_output_tokens, "probe")
    async with launch_embedded(EmbeddedConfig(max_model_len=MAX_MODEL_LEN)) as proc:
        result = await run_collection(collect_cfg([proc.base_url], src, tmp / "probe_out.jsonl", 4, args))
    s = result.summary
    return int((s["input_tokens_this_run"] + s["output_tokens_this_run"]) / max(1, s["rollouts"])) or args.prompt_tokens


def collect_cfg(urls: list[str], src: Path, out: Path, setting: Any, args: argparse.Namespace) -> Any:
    router: dict[str, Any] = {}
    if setting == "auto":
        router = {"metrics_interval_s": args.metrics_interval_s, "admission": {}}
        for item in filter(None, args.admission.split(",")):
            key, value = item.split("=", 1)
            router["admission"][key] = float(value) if "." in value else int(value)
    return build_collect_config({
        "policy_base_url": urls, "input_jsonl_fpath": str(src), "output_jsonl_fpath": str(out),
        "num_samples_in_parallel": setting, "progress": "off", "overwrite": True, "router": router,
        "resource": {"name": "exact_match", "cls": "gym_rollouts.resource.exact_match:ExactMatchResource"},
    })


async def run_setting(setting: Any, kv_tokens: list[int], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    src = rows(tmp / f"in_{setting}.jsonl", args.rollouts, args.prompt_tokens, args.max_output_tokens, f"s{setting}")
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(launch_embedded(EmbeddedConfig(
            latency_ms=args.latency_ms, latency_per_token_ms=args.ms_per_token, kv_cache_tokens=kv,
            prefill_ms_per_token=args.prefill_ms_per_token, max_model_len=MAX_MODEL_LEN))) for kv in kv_tokens]
        urls = [p.base_url for p in procs]
        http = await stack.enter_async_context(HttpTransport(TransportConfig(), concurrency=8))
        before = await preemptions(http, urls)
        started = time.monotonic()
        result = await run_collection(collect_cfg(urls, src, tmp / f"out_{setting}.jsonl", setting, args))
        wall = time.monotonic() - started
        after = await preemptions(http, urls)
    out = {"setting": setting, "makespan_s": result.summary["elapsed_s"], "wall_s": round(wall, 3),
           "preemptions": after - before, "rollouts": result.summary["rollouts"], "failures": result.failures}
    if setting == "auto":
        out["final_admit_limits"] = [s.get("admit_limit") for s in result.servers]
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    seqs = [int(x) for x in args.kv_seqs.split(",")]
    fixed = [int(x) for x in args.fixed.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_admission_") as tmp_name:
        tmp = Path(tmp_name)
        seq_tokens = await probe_seq_tokens(args, tmp)
        kv_tokens = [max(MAX_MODEL_LEN, k * seq_tokens) for k in seqs]
        results = [await run_setting(s, kv_tokens, args, tmp) for s in ["auto", *fixed]]
    auto, rest = results[0], results[1:]
    best = min(rest, key=lambda r: r["makespan_s"])
    worst = max(rest, key=lambda r: r["makespan_s"])
    return {
        "fleet": {"kv_seqs": seqs, "seq_tokens": seq_tokens, "kv_cache_tokens": kv_tokens,
                  "latency_ms": args.latency_ms, "ms_per_token": args.ms_per_token,
                  "prefill_ms_per_token": args.prefill_ms_per_token, "fits_total": sum(seqs)},
        "rollouts": args.rollouts, "metrics_interval_s": args.metrics_interval_s, "results": results,
        "best_fixed": best["setting"], "worst_fixed": worst["setting"],
        "auto_over_best_fixed": round(auto["makespan_s"] / best["makespan_s"], 3),
        "auto_over_worst_fixed": round(auto["makespan_s"] / worst["makespan_s"], 3),
        "auto_preemptions_over_best_fixed": (round(auto["preemptions"] / best["preemptions"], 3)
                                             if best["preemptions"] else None),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
