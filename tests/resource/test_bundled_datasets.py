"""Each resource with its bundled dataset reaches reward 1.0 on every row against the embedded
backend, through the whole pipeline (in process, talking to the shared server subprocess over a
real socket). Given ``policy_base_url``, no embedded server of its own is started."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from openai.types.responses import Response

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import bundled_dataset, run_collection


def embedded_children(exclude: int) -> set[int]:
    """Direct child processes of this one running ``gym_rollouts.embedded`` (Linux /proc)."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), -1)
        if ppid == me and b"gym_rollouts.embedded" in cmdline:
            found.add(int(entry.name))
    return found


@pytest.mark.parametrize("resource", ["exact_match", "arithmetic", "weather"])
async def test_bundled_dataset_reaches_reward_one(resource: str, embedded_server, tmp_path: Path):
    out = tmp_path / "rollouts.jsonl"
    cfg = build_collect_config(compose_plain([
        f"resource={resource}", f"policy_base_url={embedded_server.base_url}", f"output_jsonl_fpath={out}",
        "progress=off", "num_samples_in_parallel=16",
    ]))
    assert not cfg.uses_embedded_backend
    started: set[int] = set()
    result = await run_collection(cfg, on_tick=lambda *_: started.update(embedded_children(embedded_server.pid)),
                                  tick_s=0.05)
    assert started == set(), "an embedded server was started although policy_base_url was given"

    tasks = [orjson.loads(line) for line in bundled_dataset(cfg.resource.example_dataset).read_bytes().splitlines()
             if line.strip()]
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert result.failures == 0 and len(rows) == len(tasks) >= 8
    assert sorted(r["_ng_task_index"] for r in rows) == list(range(len(tasks)))
    for row in rows:
        assert row["reward"] == 1.0, (row["_ng_task_index"], row["response"]["output"])
        assert row["expected_answer" if resource != "weather" else "city"] == \
            tasks[row["_ng_task_index"]]["expected_answer" if resource != "weather" else "city"]
        assert row["_gr"]["servers"] == [embedded_server.base_url]
        Response.model_validate(row["response"])
    kinds = {i["type"] for r in rows for i in r["response"]["output"]}
    assert ("function_call" in kinds) == (resource != "exact_match")


async def test_without_policy_base_url_an_embedded_server_runs_for_the_run_only(embedded_server, tmp_path: Path):
    out = tmp_path / "rollouts.jsonl"
    cfg = build_collect_config(compose_plain([f"output_jsonl_fpath={out}", "progress=off", "limit=2"]))
    assert cfg.uses_embedded_backend
    started: set[int] = set()
    result = await run_collection(cfg, on_tick=lambda *_: started.update(embedded_children(embedded_server.pid)),
                                  tick_s=0.05)
    assert len(started) == cfg.servers.num_servers == 1
    assert embedded_children(embedded_server.pid) == set()  # stopped and reaped after the run
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert result.failures == 0 and len(rows) == 2
    assert rows[0]["_gr"]["servers"] != [embedded_server.base_url]
