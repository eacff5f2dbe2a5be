"""A whole ``collect`` run over three embedded servers, one killed mid-run: every rollout is
written exactly once, none fails, and the aggregate metrics carry the router's per-server stats."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.engine.session import run_collection


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


async def test_collect_survives_a_server_killed_mid_run(start_fleet, tmp_path: Path) -> None:
    procs = start_fleet(*[EmbeddedConfig(latency_ms=30.0) for _ in range(3)])
    victim = procs[2]
    out = tmp_path / "rollouts.jsonl"
    raw = compose_plain([
        f"policy_base_url=[{','.join(p.base_url for p in procs)}]", f"output_jsonl_fpath={out}",
        "num_samples_in_parallel=8", "num_repeats=2", "progress=off",
        "router.health_interval_s=0.2", "router.down_cooldown_s=0.3", "transport.backoff_base_s=0.05",
    ])
    cfg = build_collect_config(raw)
    run = asyncio.create_task(run_collection(cfg))
    deadline = time.monotonic() + 60
    while _lines(out) < 24 and not run.done():
        assert time.monotonic() < deadline, "the run did not get going"
        await asyncio.sleep(0.02)
    assert not run.done(), "the run finished before the kill: make it longer"
    await asyncio.to_thread(victim.kill)
    result = await asyncio.wait_for(run, 120)

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 128  # 64 bundled tasks x 2 repeats, none twice
    assert result.failures == 0
    failures = result.paths.failures
    assert not failures.exists() or not failures.read_text().strip(), failures.read_text()
    servers = {s["server"]: s for s in result.servers}
    assert set(servers) == {p.base_url for p in procs}
    assert servers[victim.base_url]["downs"] >= 1 and not servers[victim.base_url]["up"]
    metrics = json.loads(result.paths.aggregate_metrics.read_text())
    assert victim.base_url in json.dumps(metrics)


async def test_collect_tells_the_router_the_rollouts_still_to_start(start_fleet, tmp_path: Path) -> None:
    """The engine's unstarted count reaches the router: near the end a much slower server takes no
    new rollout (``tail_skips`` in the aggregate metrics' router summary)."""
    fast, slow = start_fleet(EmbeddedConfig(latency_ms=5.0), EmbeddedConfig(latency_ms=60.0))
    out = tmp_path / "rollouts.jsonl"
    raw = compose_plain([f"policy_base_url=[{fast.base_url},{slow.base_url}]", f"output_jsonl_fpath={out}",
                         "num_samples_in_parallel=4", "progress=off", "router.health_interval_s=0"])
    result = await asyncio.wait_for(run_collection(build_collect_config(raw)), 120)
    assert result.summary["rollouts"] == 64 and result.failures == 0
    [entry] = json.loads(result.paths.aggregate_metrics.read_text())
    router = entry["run"]["router"]
    assert router["tail_skips"] >= 1, router
    assert router["capacity"]["latency_ms"][1] > 2 * router["capacity"]["latency_ms"][0], router
