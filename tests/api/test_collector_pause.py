"""``Collector.pause`` / ``resume`` (router/pause.py does the work): during a run in both modes and
between runs, no rollout lost or duplicated, the weight version recorded per call."""

from __future__ import annotations

import asyncio

import pytest

from api_helpers import model_calls, task_rows
from gym_rollouts import Collector
from gym_rollouts.records import EXTRAS


async def _quiet_for(server, seconds: float) -> bool:
    before = model_calls(server)
    await asyncio.sleep(seconds)
    return model_calls(server) == before


def _versions(row: dict) -> set[str]:
    return {call["weight_version"] for call in row[EXTRAS]["calls"]}


@pytest.mark.parametrize("mode", ["wait", "abort"])
async def test_pause_during_a_run_loses_and_duplicates_nothing(slow_server, config_for, mode: str) -> None:
    cfg = config_for(slow_server, "num_samples_in_parallel=4", "weights.version=v1")
    rows = []
    async with Collector(cfg) as c:
        assert c.weight_version == "v1"
        async for row in c.run(task_rows(16)):
            rows.append(row)
            if len(rows) == 2:
                await c.pause(mode)
                assert c.paused
                assert await _quiet_for(slow_server, 0.3), "model calls went out while paused"
                await c.resume("v2")
                assert not c.paused and c.weight_version == "v2"
        stats = c.session.pause.stats()
    assert sorted(r[EXTRAS]["seq"] for r in rows) == list(range(16))
    assert c.last_run.failures == 0 and c.last_run.failure_rows == []
    assert _versions(rows[0]) == {"v1"} and any(_versions(r) == {"v2"} for r in rows)
    assert stats["pauses"] == 1 and (stats["aborted_calls"] > 0 if mode == "abort" else True)


async def test_pause_between_runs_holds_the_next_run_until_resume(slow_server, config_for) -> None:
    async with Collector(config_for(slow_server, "num_samples_in_parallel=2")) as c:
        assert len([r async for r in c.run(task_rows(2))]) == 2
        await c.pause()
        resumed = False

        async def later() -> None:
            nonlocal resumed
            assert await _quiet_for(slow_server, 0.3)
            resumed = True
            await c.resume("v3")

        resumer = asyncio.create_task(later())
        rows = [r async for r in c.run(task_rows(3))]
        await resumer
    assert resumed and len(rows) == 3 and all(_versions(r) == {"v3"} for r in rows)
