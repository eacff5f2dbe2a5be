"""The router over real sockets: embedded servers as child processes, killed, restarted, faulty."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

import aiohttp
import pytest
from router_harness import FAST_TRANSPORT, by_server, drive, open_dispatcher, wait_for

from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.errors import ServerStatusError, TransportError


async def test_killed_server_mid_run_loses_nothing_and_gets_traffic_after_restart(start_fleet) -> None:
    procs = start_fleet(*[EmbeddedConfig(latency_ms=40.0) for _ in range(3)])
    victim = procs[1]
    killed_at: list[float] = []
    answered = 0

    async def kill_after_30_calls(call) -> None:
        nonlocal answered
        answered += 1
        if answered == 30:
            await asyncio.to_thread(victim.kill)
            killed_at.append(time.monotonic())

    async with open_dispatcher([p.base_url for p in procs], concurrency=12) as dispatcher:
        calls = await drive(dispatcher, range(60), turns=4, workers=12, after_call=kill_after_30_calls)
        assert killed_at
        answered = collections.Counter((c.rollout, c.turn) for c in calls)
        assert answered == {(r, t): 1 for r in range(60) for t in range(4)}
        stats = by_server(dispatcher)
        victim_row = stats[victim.base_url]
        assert victim_row["downs"] >= 1 and not victim_row["up"]
        assert sum(row["completed"] for row in stats.values()) == 240  # each call answered exactly once
        assert all(row["in_flight"] == 0 for row in stats.values())
        assert any(c.server == victim.base_url for c in calls)
        late = [c for c in calls if c.server == victim.base_url and c.ended > killed_at[0] + 1.0]
        assert not late, "the dead server kept getting calls"

        await asyncio.to_thread(victim.start)  # same port
        await wait_for(lambda: by_server(dispatcher)[victim.base_url]["up"], 15.0, "the restarted server to be up")
        before = by_server(dispatcher)[victim.base_url]["completed"]
        more = await drive(dispatcher, range(100, 130), turns=2, workers=6)
        assert len(more) == 60
        after = by_server(dispatcher)[victim.base_url]
        assert after["completed"] > before and after["state"] == "up"


async def test_server_answering_only_503_is_routed_around(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(), EmbeddedConfig(fault_rate=1.0, fault_kinds=("503",)), EmbeddedConfig())
    bad = procs[1].base_url
    async with open_dispatcher([p.base_url for p in procs], concurrency=6) as dispatcher:
        calls = await drive(dispatcher, range(40), turns=3, workers=6)
        assert len(calls) == 120 and not [c for c in calls if c.server == bad]
        row = by_server(dispatcher)[bad]
        assert row["completed"] == 0 and row["downs"] >= 1
        # after the first trip it is only ever tried one request at a time, ever more rarely
        assert row["failed"] <= 20, row
        assert dispatcher.summary()["retries_by_kind"].get("status_5xx", 0) == row["failed"]


async def test_hung_server_costs_at_most_the_timeout(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(), EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",)), EmbeddedConfig())
    hung = procs[1].base_url
    read_timeout = 1.5
    transport = dataclasses.replace(FAST_TRANSPORT, read_timeout_s=read_timeout)
    async with open_dispatcher([p.base_url for p in procs], transport=transport, concurrency=6) as dispatcher:
        started = time.monotonic()
        calls = await drive(dispatcher, range(30), turns=2, workers=6)
        elapsed = time.monotonic() - started
        assert len(calls) == 60 and not [c for c in calls if c.server == hung]
        slowest = max(c.seconds for c in calls)
        assert slowest < read_timeout + 3.0, f"a call took {slowest:.2f}s (timeout {read_timeout}s)"
        row = by_server(dispatcher)[hung]
        assert row["failed"] >= 1 and row["completed"] == 0
        assert dispatcher.summary()["retries_by_kind"].get("timeout", 0) == row["failed"]
        # the run is not serialised behind the hung server: far below one timeout per call
        assert elapsed < 60 * read_timeout / 4


async def test_server_failing_health_probes_gets_no_traffic_until_it_recovers(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(), EmbeddedConfig())
    sick = procs[0]
    async with aiohttp.ClientSession() as admin, open_dispatcher([p.base_url for p in procs]) as dispatcher:
        async with admin.post(sick.root_url + "/_admin/faults", json={"fail_health": True}) as resp:
            assert resp.status == 200
        await wait_for(lambda: not by_server(dispatcher)[sick.base_url]["up"], 10.0, "probes to mark it down")
        calls = await drive(dispatcher, range(20), turns=2, workers=4)
        assert {c.server for c in calls} == {procs[1].base_url}
        async with admin.post(sick.root_url + "/_admin/faults", json={"fail_health": False}) as resp:
            assert resp.status == 200
        await wait_for(lambda: by_server(dispatcher)[sick.base_url]["up"], 10.0, "probes to bring it back")
        calls = await drive(dispatcher, range(20, 40), turns=2, workers=4)
        assert sick.base_url in {c.server for c in calls}


async def test_cancelled_calls_leave_no_in_flight_count(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(latency_ms=5000.0))
    async with open_dispatcher([proc.base_url], concurrency=8) as dispatcher:
        chat = {"model": "gym-tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
        tasks = [asyncio.create_task(dispatcher.post("/chat/completions", chat, f"r{i}")) for i in range(5)]
        await wait_for(lambda: dispatcher.stats()[0]["in_flight"] == 5, 10.0, "5 calls in flight")
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        row = dispatcher.stats()[0]
        assert (row["in_flight"], row["completed"], row["failed"]) == (0, 0, 0) and row["up"]


async def test_context_length_400_goes_back_untouched_and_is_not_retried(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(max_model_len=64), EmbeddedConfig(max_model_len=64))
    async with open_dispatcher([p.base_url for p in procs]) as dispatcher:
        with pytest.raises(ServerStatusError) as info:
            await dispatcher.post("/chat/completions", {"model": "gym-tiny", "max_tokens": 4,
                                                        "messages": [{"role": "user", "content": "hi " * 200}]}, "r0")
        assert info.value.status == 400 and "maximum context length is 64 tokens" in info.value.body
        rows = dispatcher.stats()
        assert sum(r["client_errors"] for r in rows) == 1 and sum(r["retried"] for r in rows) == 0
        assert all(r["up"] and r["failed"] == 0 for r in rows)


async def test_all_servers_down_gives_up_with_the_transport_error(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig())
    url = proc.base_url
    proc.kill()
    transport = dataclasses.replace(FAST_TRANSPORT, retry_budget={"connect": 2})
    async with open_dispatcher([url], transport=transport) as dispatcher:
        with pytest.raises(TransportError) as info:
            await dispatcher.post("/chat/completions", {"model": "gym-tiny", "messages": []}, "r0")
        assert info.value.kind == "connect" and info.value.reason == "refused"
        row = dispatcher.stats()[0]
        assert row["failed"] == 3 and row["retried"] == 2 and row["in_flight"] == 0


async def test_metrics_steer_new_rollouts_away_from_a_server_queued_by_another_client(start_fleet) -> None:
    busy, idle = start_fleet(EmbeddedConfig(latency_ms=3000.0, max_num_seqs=1, max_model_len=256), EmbeddedConfig())
    chat = {"model": "gym-tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "hello " * 20}]}
    async with aiohttp.ClientSession() as other_client, \
            open_dispatcher([busy.base_url, idle.base_url], use_metrics=True, metrics_interval_s=0.1) as dispatcher:
        assert dispatcher.stats()[0]["waiting"] == 0 and dispatcher.stats()[0]["kv_cache_usage"] == 0.0
        queued = [asyncio.create_task(other_client.post(busy.base_url + "/chat/completions", json=chat))
                  for _ in range(4)]
        try:
            await wait_for(lambda: dispatcher.stats()[0]["waiting"] >= 3, 10.0, "waiting requests from /metrics")
            assert dispatcher.stats()[0]["kv_cache_usage"] > 0 and dispatcher.stats()[1]["waiting"] == 0
            servers = [(await dispatcher.post("/chat/completions", chat, f"r{i}"))[0] for i in range(6)]
            assert servers == [idle.base_url] * 6  # our own in-flight counts are 0 on both
        finally:
            for task in queued:
                task.cancel()
            await asyncio.gather(*queued, return_exceptions=True)


async def test_without_health_probes_a_down_server_comes_back_after_its_cooldown(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("503",)), EmbeddedConfig())
    flaky = procs[0]
    async with aiohttp.ClientSession() as admin, \
            open_dispatcher([p.base_url for p in procs], health_interval_s=0.0, down_cooldown_s=0.3) as dispatcher:
        assert dispatcher._probe_task is None  # no background probes at all
        calls = await drive(dispatcher, range(4), turns=1, workers=1)
        assert {c.server for c in calls} == {procs[1].base_url}
        assert by_server(dispatcher)[flaky.base_url]["downs"] >= 1
        async with admin.post(flaky.root_url + "/_admin/faults", json={"rate": 0.0}) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.5)  # past the cooldown (0.3 s after one trip)
        calls = await drive(dispatcher, range(10, 20), turns=1, workers=1)
        row = by_server(dispatcher)[flaky.base_url]
        assert flaky.base_url in {c.server for c in calls}
        assert row["up"] and row["state"] == "up" and row["completed"] >= 1


async def test_tokenize_calls_are_counted_apart_from_generation(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig())
    async with open_dispatcher([proc.base_url]) as dispatcher:
        _, answer = await dispatcher.post("/tokenize", {"model": "gym-tiny", "prompt": "2 + 3"}, "r0", at_root=True)
        assert answer["tokens"]
        row = dispatcher.stats()[0]
        assert (row["tokenize"], row["completed"], row["mean_latency_ms"]) == (1, 0, None)
        await dispatcher.post("/chat/completions", {"model": "gym-tiny", "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "x"}]}, "r0")
        row = dispatcher.stats()[0]
        assert (row["tokenize"], row["completed"]) == (1, 1) and row["mean_latency_ms"] is not None
