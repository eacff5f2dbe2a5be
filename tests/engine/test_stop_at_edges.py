"""A stop at the edges of a run: during start-up (before any rollout) it returns at once with
nothing written; after the last rollout finished it does not make a complete run interrupted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from engine_helpers import write_tasks
from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import run_collection
from gym_rollouts.engine.shutdown import StopControl


def _cfg(base_url: str, tmp_path: Path, *extra: str):
    write_tasks(tmp_path / "in.jsonl", 6)
    return build_collect_config(compose_plain([
        f"policy_base_url={base_url}", f"input_jsonl_fpath={tmp_path / 'in.jsonl'}",
        f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", "resource=exact_match", "progress=off", *extra]))


async def test_a_stop_during_start_up_returns_at_once_and_writes_nothing(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never answer: /v1/models would wait for its timeout

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = StopControl()
    try:
        cfg = _cfg(f"http://127.0.0.1:{port}/v1", tmp_path)
        asyncio.get_running_loop().call_later(0.5, stop.request, "SIGINT received")
        result = await asyncio.wait_for(run_collection(cfg, stop=stop), 10.0)
    finally:
        server.close()
    assert result.interrupted and not result.started and result.fleet is None
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out_run.json").exists()


async def test_a_stop_after_the_last_job_finished_leaves_the_run_complete(monkeypatch) -> None:
    from gym_rollouts.engine import runner

    done: list[int] = []

    async def fake_run_one(parts, job, first_attempt=1) -> None:
        await asyncio.sleep(0.001)
        done.append(job)
        if len(done) == 20:
            # the signal lands once the last job is done (a handler runs between tasks)
            asyncio.get_running_loop().call_soon(parts.stop.request, "SIGINT received")

    monkeypatch.setattr(runner, "run_one", fake_run_one)

    def parts(stop: StopControl) -> SimpleNamespace:
        return SimpleNamespace(cfg=SimpleNamespace(num_samples_in_parallel=4, shutdown_grace_s=5.0), workers=4,
                               stats=SimpleNamespace(in_flight=0), stop=stop)

    assert await runner.run_pool(parts(StopControl()), iter([(i, 1) for i in range(20)]))
    assert sorted(done) == list(range(20))
    done.clear()
    stopped = StopControl()
    assert not await runner.run_pool(parts(stopped), iter([(i, 1) for i in range(40)]))  # stopped half-way
    assert len(done) < 40
