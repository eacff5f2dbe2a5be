"""Wire tests of the simulated GPU: the embedded server as a child process on 127.0.0.1, driven
over real sockets (prefill cost with prefix-cache hits, KV-cache preemption and its makespan)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from dataclasses import replace

from gym_rollouts.embedded import EmbeddedConfig, launch_embedded
from gym_rollouts.embedded.launch import launch_fleet

# K = 4 sequences of 64 prompt + 64 output tokens fit in the KV cache (the byte tokenizer: one
# character = one token; these prompts' scripted answers are longer, so max_tokens cuts them to C)
K, P, C = 4, 64, 64
KV_ROOM = K * (P + C)
KV_CFG = EmbeddedConfig(max_model_len=256, kv_cache_tokens=KV_ROOM, latency_per_token_ms=2.0,
                        prefill_ms_per_token=1.0, prefix_caching=False)


def body(i: int, length: int = P, max_tokens: int = C, **extra) -> dict:
    return {"model": "gym-tiny", "prompt": f"{i:05d}" + "x" * (length - 5), "max_tokens": max_tokens, **extra}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{[^}}]*}} (\S+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


async def timed(w, bodies) -> tuple[float, list]:
    start = time.perf_counter()
    replies = await asyncio.gather(*(w.post("/v1/completions", b) for b in bodies))
    return time.perf_counter() - start, replies


async def test_a_cached_prefix_makes_the_second_request_faster(wire_to):
    cfg = EmbeddedConfig(prefill_ms_per_token=1.0, latency_per_token_ms=0.5)
    async with launch_embedded(cfg) as proc:
        w = wire_to(proc.base_url)
        prompt = {"model": "gym-tiny", "prompt": "p" * 480, "max_tokens": 8}
        first, [(s1, r1)] = await timed(w, [prompt])
        second, [(s2, r2)] = await timed(w, [prompt])
        assert s1 == s2 == 200 and r1["usage"]["completion_tokens"] == 8
        assert first > 0.45  # 480 missed tokens at 1 ms
        assert second < first / 3  # all 30 blocks hit: one token computed
        _, text, _ = await w.get("/metrics")
        assert metric(text, "vllm:prefix_cache_queries_total") == 960
        assert metric(text, "vllm:prefix_cache_hits_total") == 480


async def test_a_full_kv_cache_preempts_and_overloading_costs_time(wire_to):
    async with launch_embedded(KV_CFG) as proc:
        w = wire_to(proc.base_url)
        wave1, r1 = await timed(w, [body(i) for i in range(K)])
        wave2, r2 = await timed(w, [body(i) for i in range(K, 2 * K)])
        _, text, _ = await w.get("/metrics")
        assert metric(text, "vllm:num_preemptions_total") == 0  # K at once fit

        samples: list[tuple[float, float, float]] = []
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                _, text, _ = await w.get("/metrics")
                samples.append((metric(text, "vllm:kv_cache_usage_perc"),
                                metric(text, "vllm:num_requests_running"),
                                metric(text, "vllm:num_requests_waiting")))
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        overload, r3 = await timed(w, [body(i) for i in range(2 * K, 4 * K)])
        stop.set()
        await poller

        assert all(status == 200 for status, _ in r1 + r2 + r3)
        assert all(reply["usage"]["completion_tokens"] == C for _, reply in r3)
        _, text, _ = await w.get("/metrics")
        assert metric(text, "vllm:num_preemptions_total") > 0
        assert metric(text, "vllm:num_requests_running") == 0
        assert metric(text, "vllm:num_requests_waiting") == 0
        assert metric(text, "vllm:kv_cache_usage_perc") == 0
        assert all(0.0 <= kv <= 1.0 for kv, _, _ in samples)
        assert max(kv for kv, _, _ in samples) > 0.8
        assert max(waiting for _, _, waiting in samples) > 0  # beyond capacity: queued
        assert max(running for _, running, _ in samples) <= 2 * K
        # the virtual-clock figures (kv_sim.simulate) are 1.03 s against 2 x 0.38 s; leave room for a busy machine
        assert overload > 1.15 * (wave1 + wave2), (overload, wave1, wave2)

        async with w.session.get(w.root + "/_admin/stats") as resp:
            stats = await resp.json()
        assert stats["num_preemptions"] == metric(text, "vllm:num_preemptions_total")
        assert stats["sim"]["recomputed_tokens"] > 0 and stats["requests_ok"] == 4 * K


async def test_a_request_that_cannot_fit_alone_is_refused_with_the_reason(wire_to):
    async with launch_embedded(KV_CFG) as proc:
        w = wire_to(proc.base_url)
        status, reply = await w.post("/v1/completions", body(0, length=200, max_tokens=40, n=16))
        assert status == 400
        assert "--kv-cache-tokens" in reply["error"]["message"]
        status, _ = await w.post("/v1/completions", body(1))  # the server carries on
        assert status == 200


async def test_max_num_seqs_still_applies_with_the_sim(wire_to):
    cfg = EmbeddedConfig(max_num_seqs=1, latency_per_token_ms=2.0, prefill_ms_per_token=0.01)
    async with launch_embedded(cfg) as proc:
        w = wire_to(proc.base_url)
        one, _ = await timed(w, [body(0, max_tokens=50)])
        three, replies = await timed(w, [body(i, max_tokens=50) for i in range(1, 4)])
        assert all(status == 200 for status, _ in replies)
        assert three > 2.2 * one  # one at a time (3x expected)


async def test_pause_abort_cuts_simulated_generations_short(wire_to):
    cfg = EmbeddedConfig(latency_per_token_ms=5.0, prefill_ms_per_token=0.01)
    async with launch_embedded(cfg) as proc:
        w = wire_to(proc.base_url)
        pending = asyncio.create_task(w.post("/v1/completions", body(0, max_tokens=200)))
        await asyncio.sleep(0.2)
        status, _ = await w.post("/pause?mode=abort")
        assert status == 200
        status, reply = await pending
        assert status == 200 and reply["choices"][0]["finish_reason"] == "abort"
        _, text, _ = await w.get("/metrics")
        assert metric(text, "vllm:num_requests_running") == 0
        assert metric(text, "vllm:kv_cache_usage_perc") == 0
        await w.post("/resume")


async def test_launch_fleet_starts_servers_of_different_sizes(wire_to):
    small = replace(KV_CFG, kv_cache_tokens=KV_ROOM)
    big = replace(KV_CFG, kv_cache_tokens=4 * KV_ROOM)
    async with launch_fleet([small, big]) as procs:
        assert len({p.port for p in procs}) == 2
        for proc, room in zip(procs, (KV_ROOM, 4 * KV_ROOM)):
            w = wire_to(proc.base_url)
            _, replies = await timed(w, [body(i) for i in range(2 * K)])
            assert all(status == 200 for status, _ in replies)
            async with w.session.get(w.root + "/_admin/stats") as resp:
                stats = await resp.json()
            assert stats["sim"]["kv_cache_tokens"] == room
            assert (stats["num_preemptions"] > 0) == (room == KV_ROOM)  # 2K fit in the big one
    assert all(not p.alive for p in procs)


def test_help_documents_the_sim_flags():
    out = subprocess.run([sys.executable, "-m", "gym_rollouts.embedded", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--prefill-ms-per-token", "--kv-cache-tokens", "--prefix-cache-blocks", "simulated GPU"):
        assert flag in out


def test_a_kv_cache_smaller_than_one_sequence_is_refused_at_start():
    run = subprocess.run([sys.executable, "-m", "gym_rollouts.embedded", "--kv-cache-tokens", "100"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "kv_cache_tokens (100) must be >= max_model_len (4096)" in run.stderr


async def test_a_client_that_leaves_frees_its_kv_room(wire_to):
    async with launch_embedded(replace(KV_CFG, latency_per_token_ms=10.0)) as proc:  # 64 steps: 0.64 s
        w = wire_to(proc.base_url)
        results = await asyncio.gather(*(w.post("/v1/completions", body(i), timeout=0.5) for i in range(2 * K)),
                                       return_exceptions=True)
        assert all(isinstance(r, asyncio.TimeoutError) for r in results)
        await asyncio.sleep(0.1)
        _, text, _ = await w.get("/metrics")
        assert metric(text, "vllm:num_requests_running") == 0
        assert metric(text, "vllm:num_requests_waiting") == 0
        assert metric(text, "vllm:kv_cache_usage_perc") == 0
        generated = metric(text, "vllm:generation_tokens_total")
        assert 0 < generated < 2 * K * C  # what was generated before they left stays counted
        status, _ = await w.post("/v1/completions", body(0))
        assert status == 200
