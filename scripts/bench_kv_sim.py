"""Benchmark of the embedded server's simulated GPU (kv_sim.py): prints JSON.

Against one child server with room for K sequences: the makespan of 2K requests sent in two waves
of K, against all 2K at once (preemptions, recomputed tokens), beside the virtual-clock figures
of `kv_sim.simulate`; and a repeated prompt's latency with and without a prefix-cache hit.

    .venv/bin/python scripts/bench_kv_sim.py [--k 4] [--prompt 64] [--output 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from gym_rollouts.embedded import EmbeddedConfig, launch_embedded
from gym_rollouts.embedded.kv_sim import KVScheduler, simulate


async def _post_all(session: aiohttp.ClientSession, url: str, bodies: list[dict]) -> float:
    async def one(body: dict) -> None:
        async with session.post(url, json=body) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()

    start = time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    return time.perf_counter() - start


async def main(k: int, prompt: int, output: int, step_ms: float, prefill_ms: float) -> dict:
    room = k * (prompt + output)
    cfg = EmbeddedConfig(max_model_len=prompt + output, kv_cache_tokens=room, latency_per_token_ms=step_ms,
                         prefill_ms_per_token=prefill_ms, prefix_caching=False)
    bodies = [{"model": "gym-tiny", "prompt": f"{i:05d}" + "x" * (prompt - 5), "max_tokens": output}
              for i in range(4 * k)]
    out: dict = {"k": k, "prompt_tokens": prompt, "output_tokens": output, "kv_cache_tokens": room,
                 "step_ms": step_ms, "prefill_ms_per_token": prefill_ms}
    async with aiohttp.ClientSession() as session:
        async with launch_embedded(cfg) as proc:
            url = proc.base_url + "/completions"
            waves = [await _post_all(session, url, bodies[i * k:(i + 1) * k]) for i in range(2)]
            overload = await _post_all(session, url, bodies[2 * k:])
            async with session.get(proc.root_url + "/_admin/stats") as resp:
                stats = await resp.json()
        out["two_waves_s"] = round(sum(waves), 4)
        out["overload_s"] = round(overload, 4)
        out["overload_over_two_waves"] = round(overload / sum(waves), 3)
        out["preemptions"] = stats["num_preemptions"]
        out["recomputed_tokens"] = stats["sim"]["recomputed_tokens"]
        reqs = [([i] * prompt, output) for i in range(2 * k)]
        make = lambda: KVScheduler(room, 0, step_ms / 1000, prefill_ms / 1000)  # noqa: E731
        wave_v = max(simulate(make(), reqs[:k]).values())
        out["virtual_two_waves_s"] = round(2 * wave_v, 4)
        out["virtual_overload_s"] = round(max(simulate(make(), reqs).values()), 4)

        cached = EmbeddedConfig(prefill_ms_per_token=prefill_ms, latency_per_token_ms=step_ms)
        async with launch_embedded(cached) as proc:
            body = {"model": "gym-tiny", "prompt": "p" * 1024, "max_tokens": 8}
            url = proc.base_url + "/completions"
            miss = await _post_all(session, url, [body])
            hit = await _post_all(session, url, [body])
        out["prefix_miss_s"], out["prefix_hit_s"] = round(miss, 4), round(hit, 4)
        out["prefix_hit_speedup"] = round(miss / hit, 2)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="sequences the KV cache holds")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens per request (>= 6)")
    ap.add_argument("--output", type=int, default=64, help="output tokens per request (<= 76: the scripted answer)")
    ap.add_argument("--step-ms", type=float, default=2.0)
    ap.add_argument("--prefill-ms", type=float, default=1.0)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.k, a.prompt, a.output, a.step_ms, a.prefill_ms)), indent=2))
