"""Pausing for a weight update against a real vLLM (0.32, CPU) started with VLLM_SERVER_DEV_MODE=1.

The facts ``FleetControl`` and the embedded double rely on (``/weight_info``, ``/is_paused``,
``/update_weight_version``, 404 without dev mode), then whole runs paused mid-way in ``wait`` and
``abort`` mode with ``weights.server_pause`` and ``weights.read_server_version``: every rollout
written exactly once, none failed, each call recording the server's version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import TransportConfig, build_collect_config
from gym_rollouts.engine.collection import CollectionSession
from gym_rollouts.errors import ConfigError
from gym_rollouts.router.fleet_control import FleetControl
from gym_rollouts.router.pause import PauseControl
from gym_rollouts.router.probe import root_url
from gym_rollouts.router.vllm_metrics import parse_metrics, parse_progress
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


async def _progress(http: HttpTransport, base_url: str) -> tuple[float | None, float | None]:
    """(the server's work counters, its requests running + waiting) from ``/metrics``."""
    status, raw = await http.get(root_url(base_url) + "/metrics", control=True)
    assert status == 200
    text = raw.decode()
    metrics = parse_metrics(text)
    return parse_progress(text), (metrics.running or 0) + (metrics.waiting or 0)


@pytest.mark.parametrize("mode", ["wait", "abort"])
async def test_a_run_paused_mid_way_on_real_vllm(real_vllm, tmp_path: Path, mode: str) -> None:
    # The pause starts as the run's first model call is sent (a task created from the gate's
    # ``version_for``, which the adapter calls as an attempt goes out: it runs before any answer is
    # read, however starved of CPU this process is next to vLLM). ``abort`` cuts off what is in
    # flight, redone after the resume; in ``wait`` mode those calls end under the old version.
    # The server keeps its version between tests: this one sets its own first.
    url, before, after = real_vllm.rstrip("/"), f"before-{mode}-{uuid.uuid4().hex[:8]}", f"after-{mode}"
    async with HttpTransport(TransportConfig(), concurrency=2) as http:
        await FleetControl(http, [url]).update_weight_version(before)
    out = tmp_path / "rollouts.jsonl"
    cfg = build_collect_config(compose_plain([
        f"policy_base_url={real_vllm}", f"output_jsonl_fpath={out}", f"limit={ROLLOUTS}",
        "num_samples_in_parallel=2", "progress=off", "model.extra_body={min_tokens:200}",  # ~1 s per call
        "weights.server_pause=true", "weights.read_server_version=true",
    ]))
    gate = PauseControl()
    pausing: list[asyncio.Task[None]] = []
    recorded = gate.version_for

    def version_for(server: str) -> str | None:
        if not pausing:
            pausing.append(asyncio.create_task(gate.pause(mode)))
        return recorded(server)

    gate.version_for = version_for  # type: ignore[method-assign]
    async with CollectionSession(cfg, pause=gate) as session:
        run = asyncio.create_task(session.run(cfg))
        try:
            async with asyncio.timeout(300):
                while not pausing:
                    assert not run.done(), "the run ended before its first model call"
                    await asyncio.sleep(0.01)
                await pausing[0]
            assert gate.paused and await gate.fleet.is_paused() == {url: True}
            # While paused nothing of ours is on the server and nothing new is sent (a call lasts
            # ~1 s: one sent in this window would be seen in flight); the server does no work either.
            # Rollouts whose calls already ended may still be verified and written meanwhile.
            async with HttpTransport(TransportConfig(), concurrency=2) as http:
                await asyncio.sleep(0.2)  # the server's last bookkeeping of what just ended or was aborted
                work, queued = await _progress(http, url)
                assert queued == 0
                for _ in range(50):
                    assert gate.in_flight() == 0, "a model call was sent while paused"
                    await asyncio.sleep(0.01)
                assert await _progress(http, url) == (work, 0), "the server worked while paused"
            await gate.resume_async(after)
            assert gate.server_versions == {url: after}
            result = await asyncio.wait_for(run, 300)
        finally:
            if not run.done():  # a failed check above: do not leave the run sending on a closing transport
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == ROLLOUTS
    assert result.failures == 0 and not result.interrupted
    by_row = [[c["weight_version"] for c in r["_gr"]["calls"]] for r in rows]
    versions = [v for row in by_row for v in row]
    assert set(versions) <= {before, after}, by_row
    if mode == "abort":  # what was in flight was cut off and redone: every call ran under the new version
        assert gate.aborted_calls >= 1 and versions.count(before) == 0, by_row
    else:  # the calls in flight at the pause (one per worker at most) ended under the old version
        assert gate.aborted_calls == 0 and 1 <= versions.count(before) <= 2, by_row
    assert sum(all(v == after for v in row) for row in by_row) >= ROLLOUTS - 2, by_row
    assert all(s["failed"] == 0 for s in result.servers), result.servers
