"""The fleet as a whole, over real sockets: the dead-fleet fuse (and when it must not blow), and
servers that were down at start-up joining once they answer (or staying out: another model)."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest
from router_harness import body, by_server, drive, open_dispatcher, wait_for

from gym_rollouts.adapter.startup import join_check
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.errors import FleetDeadError


async def test_the_fuse_blows_once_when_every_server_is_gone(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(latency_ms=50.0), EmbeddedConfig(latency_ms=50.0))
    blown: list[tuple[float, FleetDeadError]] = []
    fuse = {"on_fleet_dead": lambda err: blown.append((time.monotonic(), err)), "vllm_servers": True}
    killed_at: list[float] = []

    async def kill_all_after_20_calls(call) -> None:
        if len(killed_at) == 0 and call.rollout >= 10:
            await asyncio.gather(*(asyncio.to_thread(p.kill) for p in procs))
            killed_at.append(time.monotonic())

    async with open_dispatcher([p.base_url for p in procs], dead_fleet_timeout_s=1.0,
                               dispatcher_kw=fuse) as dispatcher:
        with pytest.raises(ExceptionGroup) as info:
            await drive(dispatcher, range(200), turns=2, workers=4, after_call=kill_all_after_20_calls)
        assert all(isinstance(e, FleetDeadError) for e in info.value.exceptions)
        assert len(blown) == 1 and killed_at
        waited = blown[0][0] - killed_at[0]
        assert 1.0 <= waited < 2.5, f"the fuse blew {waited:.2f}s after the kill (fuse: 1 s)"
        message = str(blown[0][1])
        assert "router.dead_fleet_timeout_s" in message
        assert all(p.base_url in message for p in procs) and "cannot connect" in message
        assert all(row["in_flight"] == 0 for row in dispatcher.stats())
        with pytest.raises(FleetDeadError):  # from now on every call fails at once
            await dispatcher.post("/chat/completions", body(0, 0), "late")


async def test_the_fuse_does_not_blow_while_nothing_is_asked_of_the_fleet(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig())
    blown: list[FleetDeadError] = []
    async with open_dispatcher([proc.base_url], dead_fleet_timeout_s=0.3, health_interval_s=0.0,
                               dispatcher_kw={"on_fleet_dead": blown.append}) as dispatcher:
        await asyncio.sleep(1.0)  # no probes, no calls: nothing answered, nothing needed
        assert not blown
        await dispatcher.post("/chat/completions", body(0, 0), "r0")
        await asyncio.sleep(0.2)
        assert not blown and dispatcher.fleet_dead is None


async def test_a_server_down_at_start_up_joins_once_it_answers(start_fleet) -> None:
    up, late = start_fleet(EmbeddedConfig(latency_ms=20.0), EmbeddedConfig(latency_ms=20.0))
    await asyncio.to_thread(late.kill)
    joins = functools.partial(join_check, model="gym-tiny", max_model_len=4096, timeout_s=2.0)
    kw = {"vllm_servers": True, "join_check_factory": joins, "absent": {late.base_url: "cannot connect"}}
    async with open_dispatcher([up.base_url, late.base_url], dispatcher_kw=kw) as dispatcher:
        assert by_server(dispatcher)[late.base_url]["state"] == "joining"
        calls = await drive(dispatcher, range(10), turns=1, workers=4)
        assert {c.server for c in calls} == {up.base_url}
        assert by_server(dispatcher)[late.base_url]["failed"] == 0  # never tried while away
        await asyncio.to_thread(late.start)  # the same port
        await wait_for(lambda: by_server(dispatcher)[late.base_url]["state"] == "up", 10.0, "the late server to join")
        calls = await drive(dispatcher, range(10, 30), turns=1, workers=4)
        assert late.base_url in {c.server for c in calls}


async def test_a_server_serving_another_model_stays_out(start_fleet, caplog) -> None:
    up, other = start_fleet(EmbeddedConfig(), EmbeddedConfig(model_name="someone-elses-model"))
    joins = functools.partial(join_check, model="gym-tiny", max_model_len=None, timeout_s=2.0)
    kw = {"vllm_servers": True, "join_check_factory": joins, "absent": {other.base_url: "was restarting"}}
    async with open_dispatcher([up.base_url, other.base_url], dispatcher_kw=kw) as dispatcher:
        await wait_for(lambda: by_server(dispatcher)[other.base_url]["state"] == "excluded", 10.0, "the exclusion")
        calls = await drive(dispatcher, range(10), turns=1, workers=4)
        assert {c.server for c in calls} == {up.base_url}
    assert "stays out of this run" in caplog.text and "not this run's gym-tiny" in caplog.text
