"""The Python API over the embedded backend: rows streamed to the caller as they finish, several
runs on one collector (one fleet discovery, the same router), list / generator / async iterable
inputs, a slow consumer bounded, nothing printed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator

from api_helpers import model_calls, server_stats, task_rows
from gym_rollouts import Collector, collect, load_config
from gym_rollouts.api import BACKLOG_MAX
from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX


async def test_rows_are_handed_over_as_they_finish(slow_server, config_for) -> None:
    cfg = config_for(slow_server, "num_samples_in_parallel=2")
    async with Collector(cfg) as c:
        seen: list[tuple[float, bool]] = []
        async for row in c.run(task_rows(8)):
            assert row["reward"] == 1.0 and row["response"]["status"] == "completed"
            seen.append((time.monotonic(), c.last_run is None))
        assert len(seen) == 8
        assert seen[0][1], "the first row came after the run had ended"
        assert seen[-1][0] - seen[0][0] > 0.1  # 4 rounds of 40 ms calls: rows arrive over time
        assert c.last_run is not None and c.last_run.summary["rollouts"] == 8 and c.last_run.failures == 0
        assert c.last_run.paths is None and not c.last_run.metrics_written


async def test_indices_as_the_cli_assigns_them(embedded_server, config_for) -> None:
    rows = task_rows(3)
    rows.append(dict(rows[0]))  # an identical line shares task 0, as in collect
    async with Collector(config_for(embedded_server)) as c:
        out = [row async for row in c.run(rows, num_repeats=2)]
    keys = sorted((r[TASK_INDEX], r[ROLLOUT_INDEX]) for r in out)
    assert keys == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert sorted(r[EXTRAS]["seq"] for r in out) == list(range(8))


async def test_several_runs_reuse_the_fleet_router_and_connections(embedded_server, config_for) -> None:
    async with Collector(config_for(embedded_server, "num_samples_in_parallel=4")) as c:
        discovered = server_stats(embedded_server)["requests"].get("models", 0)
        dispatcher, transport, table = c.session.dispatcher, c.session.transport, c.session.table
        for step in range(3):
            out = [row async for row in c.run(task_rows(5, start=10 * step))]
            assert len(out) == 5 and {r["task_id"] for r in out} == {f"t{10 * step + i}" for i in range(5)}
            assert c.last_run.summary["rollouts"] == 5  # per run, not cumulative
        assert c.session.discoveries == 1 and c.runs == 3
        assert server_stats(embedded_server)["requests"].get("models", 0) == discovered  # no second /v1/models
        assert c.session.dispatcher is dispatcher and c.session.transport is transport and c.session.table is table
        assert sum(s["completed"] for s in dispatcher.stats()) >= 15  # one router saw every run's calls


async def test_generator_and_async_iterable_inputs(embedded_server, config_for) -> None:
    async def arows() -> AsyncIterator[dict[str, Any]]:
        for row in task_rows(4):
            await asyncio.sleep(0)
            yield row

    async with Collector(config_for(embedded_server)) as c:
        from_list = sorted([r["task_id"] async for r in c.run(task_rows(4))])
        from_gen = sorted([r["task_id"] async for r in c.run(row for row in task_rows(4))])
        from_async = sorted([r["task_id"] async for r in c.run(arows())])
    assert from_list == from_gen == from_async == ["t0", "t1", "t2", "t3"]


async def test_a_slow_consumer_holds_the_workers_back(embedded_server, config_for) -> None:
    workers = 8
    async with Collector(config_for(embedded_server, f"num_samples_in_parallel={workers}")) as c:
        async with contextlib.aclosing(c.run(task_rows(BACKLOG_MAX + 150))) as rows:
            got = [await anext(rows)]
            calls, steady = model_calls(embedded_server), 0
            deadline = time.monotonic() + 30
            while steady < 3 and time.monotonic() < deadline:  # until the workers stop making calls
                await asyncio.sleep(0.2)
                now = model_calls(embedded_server)
                steady, calls = (steady + 1 if now == calls else 0), now
            waiting = c.pending_rows
            assert BACKLOG_MAX // 2 <= waiting <= BACKLOG_MAX + workers, waiting
            got += [row async for row in rows]
    assert len(got) == BACKLOG_MAX + 150 and c.last_run.summary["rollouts"] == BACKLOG_MAX + 150


async def test_breaking_out_stops_the_run_and_the_next_run_works(slow_server, config_for) -> None:
    async with Collector(config_for(slow_server, "num_samples_in_parallel=2")) as c:
        async with contextlib.aclosing(c.run(task_rows(40))) as rows:
            async for _ in rows:
                break
        assert c.last_run is not None and c.last_run.interrupted
        assert len([r async for r in c.run(task_rows(2))]) == 2


def test_nothing_is_printed(embedded_server, capsys, tmp_path) -> None:
    cfg = load_config([f"policy_base_url={embedded_server.base_url}", "resource=exact_match"])
    done = collect(cfg, task_rows(3), output=tmp_path / "out.jsonl")
    assert len(done.rows) == 3 and done.failures == 0 and done.result.metrics_written
    with_embedded = collect(["resource=exact_match", "servers.latency_ms=0"], task_rows(2))  # servers we start
    assert len(with_embedded.rows) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
