"""Whole runs paused mid-run (a helper task in-process pauses, bumps the weight version, resumes),
over embedded servers as child processes: every rollout written exactly once (or dropped and
counted), none failed, every call's version recorded, straddling rollouts handled per
``weights.on_version_change``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.engine.collection import CollectionSession
from gym_rollouts.router.pause import PauseControl

TASKS, REPEATS = 12, 2


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


async def _pause_once(out: Path, gate: PauseControl, mode: str, run: asyncio.Task) -> None:
    deadline = time.monotonic() + 60
    while _lines(out) < 4:
        assert time.monotonic() < deadline and not run.done(), "the run did not get going (or ended too soon)"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.35)  # the slow server's rollouts are on their second call now (see the test)
    await gate.pause(mode)
    assert gate.paused
    await asyncio.sleep(0.3)  # the trainer updates the weights
    gate.resume("v2")


@pytest.mark.parametrize("mode, policy", [("abort", "keep"), ("wait", "keep"), ("abort", "drop"), ("abort", "redo")])
async def test_a_run_paused_mid_way(start_fleet, tmp_path: Path, mode: str, policy: str) -> None:
    # Two calls per rollout. A fast and a slow server, so that the pause (0.35 s after the fast
    # server's first rows, ~0.55 s in) catches the slow server's rollouts on their second call
    # (0.4-0.8 s): those straddle the versions (their first call was under v1).
    procs = start_fleet(EmbeddedConfig(latency_ms=100.0), EmbeddedConfig(latency_ms=400.0))
    out = tmp_path / "rollouts.jsonl"
    cfg = build_collect_config(compose_plain([
        f"policy_base_url=[{','.join(p.base_url for p in procs)}]", f"output_jsonl_fpath={out}",
        "num_samples_in_parallel=8", f"num_repeats={REPEATS}", f"limit={TASKS}", "progress=off",
        "weights.version=v1", f"weights.on_version_change={policy}",
    ]))
    gate = PauseControl()  # weights.version fills its label when the fleet opens
    async with CollectionSession(cfg, pause=gate) as session:
        run = asyncio.create_task(session.run(cfg))
        await _pause_once(out, gate, mode, run)
        result = await asyncio.wait_for(run, 120)

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a rollout written twice"
    summary = result.summary
    assert result.failures == 0 and not result.interrupted
    assert not result.paths.failures.exists() or not result.paths.failures.read_text().strip()
    for row in rows:
        extras = row["_gr"]
        calls = extras["calls"]
        assert len(calls) == extras["model_calls"] and calls, extras
        assert {c["server"] for c in calls} <= {p.base_url for p in procs}
        versions = [c["weight_version"] for c in calls]
        assert set(versions) <= {"v1", "v2"}
        assert extras["weight_versions_straddled"] == (len(set(versions)) > 1)
        assert versions == sorted(versions), "a call under v1 after one under v2"
    straddled = [r for r in rows if r["_gr"]["weight_versions_straddled"]]
    assert summary["straddled"] == len(straddled)
    assert any(c["weight_version"] == "v2" for r in rows for c in r["_gr"]["calls"])
    if policy == "keep":
        assert len(rows) == TASKS * REPEATS
        if mode == "abort":  # the aborted calls were redone under v2 after earlier calls under v1
            assert straddled and gate.aborted_calls > 0
    elif policy == "drop":
        assert not straddled and summary["dropped_straddled"] > 0
        assert len(rows) + summary["dropped_straddled"] == TASKS * REPEATS
        assert result.metrics_written  # a complete run: dropped rollouts are done
    else:
        assert len(rows) == TASKS * REPEATS and summary["redone_straddled"] > 0
        assert not straddled and all(r["_gr"]["attempt"] == 1 for r in rows)  # a redo is not a failed attempt
    stats = {s["server"]: s for s in result.servers}
    assert all(s["failed"] == 0 and s["abandoned"] == 0 for s in stats.values()), stats
