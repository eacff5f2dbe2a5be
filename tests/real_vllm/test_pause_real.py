"""Pausing for a weight update against a real vLLM (0.32, CPU) started with VLLM_SERVER_DEV_MODE=1.

The facts ``FleetControl`` and the embedded double rely on (``/weight_info``, ``/is_paused``,
``/update_weight_version``, 404 without dev mode), then whole runs paused mid-way in ``wait`` and
``abort`` mode with ``weights.server_pause`` and ``weights.read_server_version``: every rollout
written exactly once, none failed, each call recording the server's version.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import TransportConfig, build_collect_config
from gym_rollouts.engine.collection import CollectionSession
from gym_rollouts.errors import ConfigError
from gym_rollouts.router.fleet_control import FleetControl
from gym_rollouts.router.pause import PauseControl
from gym_rollouts.transport.client import HttpTransport

pytestmark = pytest.mark.real_vllm
ROLLOUTS = 8


async def test_dev_mode_controls_on_real_vllm(real_vllm) -> None:
    async with HttpTransport(TransportConfig(), concurrency=2) as http:
        fleet = FleetControl(http, [real_vllm])
        before = (await fleet.weight_versions())[real_vllm.rstrip("/")]
        assert isinstance(before, str)  # "default" on a fresh server
        try:
            await fleet.update_weight_version("probe-1")
            assert await fleet.weight_versions() == {real_vllm.rstrip("/"): "probe-1"}
            await fleet.pause("keep")
            assert await fleet.is_paused() == {real_vllm.rstrip("/"): True}
        finally:
            await fleet.resume()
            await fleet.update_weight_version(before)
        assert await fleet.is_paused() == {real_vllm.rstrip("/"): False}


async def test_a_server_without_dev_mode_is_named(real_vllm_no_tools) -> None:
    async with HttpTransport(TransportConfig(), concurrency=2) as http:
        with pytest.raises(ConfigError, match="VLLM_SERVER_DEV_MODE=1"):
            await FleetControl(http, [real_vllm_no_tools]).weight_versions()


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("mode", ["wait", "abort"])
async def test_a_run_paused_mid_way_on_real_vllm(real_vllm, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "rollouts.jsonl"
    cfg = build_collect_config(compose_plain([
        f"policy_base_url={real_vllm}", f"output_jsonl_fpath={out}", f"limit={ROLLOUTS}",
        "num_samples_in_parallel=2", "progress=off", "model.extra_body={min_tokens:200}",  # ~1 s per call
        "weights.server_pause=true", "weights.read_server_version=true",
    ]))
    gate = PauseControl()
    async with CollectionSession(cfg, pause=gate) as session:
        run = asyncio.create_task(session.run(cfg))
        deadline = time.monotonic() + 300
        while _lines(out) < 1:
            assert time.monotonic() < deadline and not run.done(), "the run did not get going"
            await asyncio.sleep(0.02)
        first = dict(gate.server_versions)
        await asyncio.sleep(0.2)
        try:
            await asyncio.wait_for(gate.pause(mode), 120)
            assert await gate.fleet.is_paused() == {real_vllm.rstrip("/"): True}
            assert gate.in_flight() == 0
            written = _lines(out)
            await asyncio.sleep(0.5)
            assert _lines(out) == written, "rows written while paused"
        finally:
            await gate.resume_async(f"after-{mode}")
        assert gate.server_versions == {real_vllm.rstrip("/"): f"after-{mode}"}
        result = await asyncio.wait_for(run, 300)

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == ROLLOUTS
    assert result.failures == 0 and not result.interrupted
    versions = [c["weight_version"] for r in rows for c in r["_gr"]["calls"]]
    assert set(versions) <= {*first.values(), f"after-{mode}"} and f"after-{mode}" in versions
    if mode == "abort":
        assert gate.aborted_calls >= 1
    assert all(s["failed"] == 0 for s in result.servers)
