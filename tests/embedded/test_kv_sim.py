"""Unit tests of the simulated GPU's pure accounting (kv_sim.py): prefix cache, KV ledger,
preemption choice, admission, and the virtual-clock makespans the wire tests rely on."""

from __future__ import annotations

import pytest

from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.embedded.config import config_from_argv, config_to_argv
from gym_rollouts.embedded.kv_sim import BLOCK_SIZE, KVScheduler, KVTooSmall, PrefixCache, simulate


def prompt(tag: int, n: int) -> list[int]:
    return [tag % 256] + [(tag * 7 + i) % 256 for i in range(n - 1)]


# -- prefix cache ---------------------------------------------------------------------------------
@pytest.mark.parametrize("first, second, hits", [
    (prompt(1, 64), prompt(1, 64), 64),          # identical: every block hits
    (prompt(1, 64), prompt(1, 70), 64),          # a longer prompt: its tail (partial block) misses
    (prompt(1, 64), prompt(1, 40), 32),          # a shorter one: its full blocks hit
    (prompt(1, 64), prompt(2, 64), 0),           # another first block: nothing hits
    (prompt(1, 64), prompt(1, 15), 0),           # under one block: never a hit
    (prompt(1, 64), prompt(1, 16)[:15] + [999], 0),  # first block differs in its last token
])
def test_prefix_cache_hits(first, second, hits):
    cache = PrefixCache()
    assert cache.lookup(first) == 0
    assert cache.lookup(second) == hits


def test_prefix_cache_hit_stops_at_first_miss():
    cache = PrefixCache()
    a = prompt(1, 64)
    cache.lookup(a)
    b = a[:16] + [0] * 16 + a[32:]  # second block differs: blocks 3-4 chain on it, so they miss too
    assert cache.lookup(b) == 16


def test_prefix_cache_is_lru_bounded():
    cache = PrefixCache(capacity_blocks=4)
    a, b = prompt(1, 2 * BLOCK_SIZE), prompt(2, 2 * BLOCK_SIZE)
    cache.lookup(a)
    cache.lookup(b)
    assert len(cache) == 4
    assert cache.lookup(a) == 32  # touched: now the most recent
    cache.lookup(prompt(3, 2 * BLOCK_SIZE))  # evicts b's two blocks, the least recently used
    assert len(cache) == 4
    assert cache.lookup(a) == 32
    assert cache.lookup(b) == 0


# -- scheduler ------------------------------------------------------------------------------------
def run_steps(sched: KVScheduler, steps: int) -> list[int]:
    done: list[int] = []
    for _ in range(steps):
        if sched.plan_step() is None:
            break
        done += sched.finish_step()
    return done


def test_step_cost_counts_only_missed_prefill_tokens():
    cache = PrefixCache()
    sched = KVScheduler(0, 0, decode_s=0.002, prefill_s_per_token=0.001, lookup=cache.lookup)
    sched.submit(0, prompt(1, 64), 3)
    assert sched.plan_step() == pytest.approx(0.002 + 0.064)
    sched.finish_step()
    assert sched.plan_step() == pytest.approx(0.002)  # decode only
    assert sched.finish_step() == []
    assert run_steps(sched, 5) == [0]  # its third token
    sched.submit(1, prompt(1, 64), 1)  # same prompt: all blocks hit, one token still computed
    assert sched.plan_step() == pytest.approx(0.002 + 0.001)
    assert sched.finish_step() == [1]


@pytest.mark.parametrize("capacity, max_num_seqs, prompts, admitted", [
    (0, 0, [10, 10, 10], 3),          # unlimited
    (0, 2, [10, 10, 10], 2),          # max_num_seqs
    (35, 0, [10, 10, 10], 3),         # 3 * (10 + 1) = 33 <= 35
    (32, 0, [10, 10, 10], 2),         # the third would need 33
    (30, 0, [10, 20, 1], 1),          # the head (20) blocks the small one behind it (FCFS)
    (40, 1, [10, 10], 1),             # both limits apply
])
def test_admission(capacity, max_num_seqs, prompts, admitted):
    sched = KVScheduler(capacity, max_num_seqs, decode_s=0.001)
    for i, n in enumerate(prompts):
        sched.submit(i, prompt(i, n), 5)
    sched.plan_step()
    assert sched.num_running == admitted
    assert sched.num_waiting == len(prompts) - admitted
    assert sched.held_tokens == sum(prompts[:admitted])


def test_growth_preempts_the_most_recently_started_and_it_recomputes():
    sched = KVScheduler(capacity_tokens=30, decode_s=0.001, prefill_s_per_token=0.001)
    for i in range(3):
        sched.submit(i, prompt(i, 8), 6)
    sched.plan_step()
    assert sched.num_running == 3 and sched.held_tokens == 24
    sched.finish_step()  # 27 held; next step needs 30: fits
    sched.plan_step()
    sched.finish_step()  # 30 held; the next needs 33 -> preempt request 2 (started last)
    assert sched.plan_step() == pytest.approx(0.001)
    assert sched.preemptions == 1
    assert [r.rid for r in sched.running] == [0, 1]
    assert [r.rid for r in sched.waiting] == [2]
    assert sched.held_tokens == 20
    done = run_steps(sched, 100)
    assert sorted(done) == [0, 1, 2]
    assert sched.idle and sched.held_tokens == 0
    assert sched.recomputed_tokens == 10  # request 2 came back with 8 prompt + 2 generated tokens


def test_a_preempted_request_goes_back_first_in_line():
    sched = KVScheduler(capacity_tokens=23, decode_s=0.001)
    sched.submit(0, prompt(0, 10), 8)
    sched.submit(1, prompt(1, 10), 8)
    sched.plan_step()
    sched.finish_step()
    sched.submit(2, prompt(2, 2), 8)  # arrives after 1 started
    sched.plan_step()  # 22 held + 2 growth > 23: preempts 1, which then waits ahead of 2
    assert [r.rid for r in sched.waiting] == [1, 2]


def test_usage_never_exceeds_one_and_every_request_finishes():
    sched = KVScheduler(capacity_tokens=4 * 192, decode_s=0.002, prefill_s_per_token=0.001)
    for i in range(8):
        sched.submit(i, prompt(i, 64), 128)
    done: list[int] = []
    while not sched.idle:
        assert sched.plan_step() is not None
        assert sched.held_tokens + sched.num_running <= sched.capacity
        done += sched.finish_step()
        assert 0.0 <= sched.usage() <= 1.0
    assert sorted(done) == list(range(8))
    assert sched.preemptions > 0


def test_overload_makespan_is_worse_than_two_waves():
    reqs = [(prompt(i, 64), 128) for i in range(8)]
    make = lambda: KVScheduler(4 * 192, 0, decode_s=0.002, prefill_s_per_token=0.001)  # noqa: E731
    overload = max(simulate(make(), reqs).values())
    wave = max(simulate(make(), reqs[:4]).values())
    assert overload > 1.2 * (2 * wave)


def test_cancel_frees_the_room():
    sched = KVScheduler(capacity_tokens=40, decode_s=0.001)
    sched.submit(0, prompt(0, 10), 5)
    sched.submit(1, prompt(1, 10), 5)
    sched.plan_step()
    sched.finish_step()
    assert sched.cancel(1) == 1
    assert sched.held_tokens == 11 and sched.num_running == 1
    assert sched.cancel(1) == 0
    sched.submit(2, prompt(2, 10), 5)
    assert sched.cancel(2) == 0 and sched.num_waiting == 0


def test_request_larger_than_the_cache_is_refused_with_a_reason():
    sched = KVScheduler(capacity_tokens=100)
    with pytest.raises(KVTooSmall, match="needs 101 tokens.*--kv-cache-tokens"):
        sched.submit(0, prompt(0, 60), 41)
    sched.submit(1, prompt(1, 60), 40)  # exactly fits


def test_simulate_with_arrivals_idles_between():
    sched = KVScheduler(0, 0, decode_s=0.01)
    finished = simulate(sched, [(prompt(0, 4), 2), (prompt(1, 4), 2)], arrivals=[0.0, 1.0])
    assert finished[0] == pytest.approx(0.02)
    assert finished[1] == pytest.approx(1.02)


# -- config ---------------------------------------------------------------------------------------
def test_config_round_trips_the_sim_flags():
    cfg = EmbeddedConfig(max_model_len=256, prefill_ms_per_token=0.5, kv_cache_tokens=1024,
                         prefix_cache_blocks=64, max_num_seqs=8)
    argv = config_to_argv(cfg)
    assert argv == ["--max-model-len", "256", "--max-num-seqs", "8", "--prefill-ms-per-token", "0.5",
                    "--kv-cache-tokens", "1024", "--prefix-cache-blocks", "64"]
    assert config_from_argv(argv) == cfg
    assert cfg.simulates_gpu and not EmbeddedConfig().simulates_gpu
    assert config_to_argv(EmbeddedConfig()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"kv_cache_tokens": 100}, "kv_cache_tokens .100. must be >= max_model_len .4096."),
    ({"kv_cache_tokens": -1}, "kv_cache_tokens must be >= 0"),
    ({"prefix_cache_blocks": -5}, "prefix_cache_blocks must be >= 0"),
    ({"prefill_ms_per_token": -0.1}, "prefill_ms_per_token must be >= 0"),
])
def test_config_refuses_bad_sim_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbeddedConfig(**kwargs)


def test_parallel_sequences_decode_together():
    sched = KVScheduler(capacity_tokens=0, decode_s=0.001)
    sched.submit(0, prompt(0, 10), 12, width=4)  # n = 4 sequences of 3 tokens
    assert run_steps(sched, 10) == [0]
    sched.submit(1, prompt(1, 10), 12, width=4)
    assert [sched.plan_step() is not None and sched.finish_step() for _ in range(3)][-1] == [1]


async def test_sim_loop_fails_its_requests_if_the_scheduler_breaks():
    import asyncio

    from gym_rollouts.embedded.sim_loop import SimLoop

    class Broken(KVScheduler):
        def finish_step(self):
            raise ZeroDivisionError("boom")

    loop = SimLoop(Broken(0, 0, decode_s=0.001))
    with pytest.raises(RuntimeError, match="simulated engine stopped.*boom"):
        await asyncio.wait_for(loop.run(prompt(0, 4), 3), 5)
    await loop.close()


async def test_sim_loop_runs_requests_in_real_time():
    import asyncio
    import time

    from gym_rollouts.embedded.sim_loop import SimLoop

    loop = SimLoop(KVScheduler(0, 0, decode_s=0.002))
    start = time.perf_counter()
    await asyncio.gather(*(loop.run(prompt(i, 4), 50) for i in range(8)))
    took = time.perf_counter() - start
    assert 0.09 < took < 1.0  # 50 steps of 2 ms, all 8 together
    assert loop.sched.idle
    await loop.close()
