"""``collect`` against real NeMo Gym environments started with NeMo Gym's own ``ng_run`` (the
session's stack: example_single_tool_call, mcqa, example_session_state_mgmt behind one head
server), on the ``data/example.jsonl`` files shipped in the wheel; the model side is the embedded
backend. For every rollout, the reward (and the extra fields) we recorded equal what the
environment's ``/verify`` answers when this test replays the same rollout to it directly: a
fresh ``/seed_session`` with the row, the same tool calls with that session's cookie, then
``/verify`` with the recorded ``response``."""

from __future__ import annotations

import json
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import orjson
import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import run_collection

ENVS = ("example_single_tool_call", "mcqa", "example_session_state_mgmt")


def _post(url: str, body: Any, cookies: dict[str, str]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            for header in resp.headers.get_all("Set-Cookie") or []:
                cookies.update({k: m.value for k, m in SimpleCookie(header).items()})
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def replay_verify(env_url: str, task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The environment's own verdict on a recorded rollout, replayed directly (see module doc);
    ``task`` is the row as collect ran it (its materialized-inputs line)."""
    cookies: dict[str, str] = {}
    assert _post(env_url + "/seed_session", task, cookies)[0] == 200
    for item in response["output"]:
        if item["type"] == "function_call":
            _post(f"{env_url}/{item['name']}", json.loads(item["arguments"]), cookies)
    status, verdict = _post(env_url + "/verify", {**task, "response": response}, cookies)
    assert status == 200, verdict
    return verdict


def _key(row: dict[str, Any]) -> tuple[int, int]:
    return row["_ng_task_index"], row["_ng_rollout_index"]


async def _collect(tmp_path: Path, stack, embedded_server, src: Path, *extra: str) -> list[dict[str, Any]]:
    out = tmp_path / f"{src.parent.parent.name}_{src.stem}.jsonl"
    cfg = build_collect_config(compose_plain(
        [f"policy_base_url={embedded_server.base_url}", f"input_jsonl_fpath={src}", f"output_jsonl_fpath={out}",
         "progress=off", "resource=nemo_gym", f"resource.params.head_url={stack.head_url}", *extra], cwd=tmp_path))
    result = await run_collection(cfg)
    assert result.failures == 0, (tmp_path / f"{out.stem}_failures.jsonl").read_text()
    tasks = {_key(r): r for r in map(orjson.loads, (tmp_path / f"{out.stem}_materialized_inputs.jsonl").read_bytes().splitlines())}
    return [(tasks[_key(r)], r) for r in map(orjson.loads, out.read_bytes().splitlines())]


@pytest.mark.parametrize("env", ENVS)
async def test_rewards_equal_the_environments_own_verify(tmp_path: Path, nemo_gym_stack, nemo_gym_env,
                                                         embedded_server, env: str) -> None:
    endpoint = nemo_gym_env(env)
    src = nemo_gym_stack.example_jsonl(env)
    rows = await _collect(tmp_path, nemo_gym_stack, embedded_server, src, f"+agent_name={nemo_gym_stack.agent_name(env)}")
    assert len(rows) == len(src.read_bytes().splitlines())
    for task, row in rows:
        verdict = replay_verify(endpoint.url, task, row["response"])
        assert row["reward"] == verdict["reward"], (row, verdict)
        for key in set(verdict) - set(task) - {"response", "reward"}:
            assert row[key] == verdict[key], key  # the extra fields of /verify reach the row unchanged


async def test_a_mixed_file_runs_against_one_head_server(tmp_path: Path, nemo_gym_stack, nemo_gym_env,
                                                         embedded_server) -> None:
    mixed = []
    for env in ("example_single_tool_call", "mcqa"):
        agent = nemo_gym_stack.agent_name(env)
        for line in nemo_gym_stack.example_jsonl(env).read_bytes().splitlines()[:3]:
            mixed.append({**orjson.loads(line), "agent_ref": {"type": "responses_api_agents", "name": agent}})
    src = tmp_path / "data" / "mixed.jsonl"
    src.parent.mkdir()
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in mixed))
    rows = await _collect(tmp_path, nemo_gym_stack, embedded_server, src)
    assert len(rows) == 6
    for task, row in rows:
        env = next(e for e in ("example_single_tool_call", "mcqa") if row["agent_ref"]["name"] == nemo_gym_stack.agent_name(e))
        assert row["reward"] == replay_verify(nemo_gym_env(env).url, task, row["response"])["reward"]
    weather = [r for _, r in rows if r["agent_ref"]["name"] == nemo_gym_stack.agent_name("example_single_tool_call")]
    assert all(any(i["type"] == "function_call_output" for i in r["response"]["output"]) for r in weather)
    [path] = tmp_path.glob("*_mixed_aggregate_metrics.json")
    metrics = orjson.loads(path.read_bytes())
    assert {e["agent_ref"]["name"] for e in metrics} == {nemo_gym_stack.agent_name(e) for e in ("example_single_tool_call", "mcqa")}


async def test_the_stateful_environment_sees_one_session_per_rollout(tmp_path: Path, nemo_gym_stack, nemo_gym_env,
                                                                     embedded_server) -> None:
    """One increment the scripted model makes: reward 1 only if seed, tool call and verify of a
    rollout reach the environment with the same session cookie (NeMo Gym's stateful example)."""
    env = "example_session_state_mgmt"
    endpoint = nemo_gym_env(env)
    tools = orjson.loads(nemo_gym_stack.example_jsonl(env).read_bytes().splitlines()[0])["responses_create_params"]["tools"]
    src = tmp_path / "data" / "counter.jsonl"
    src.parent.mkdir()
    src.write_bytes(b"".join(orjson.dumps({"responses_create_params": {
        "input": [{"role": "user", "content": f"increment the counter by {add}"}], "tools": tools},
        "initial_count": start, "expected_count": start + add}) + b"\n" for start, add in ((3, 4), (10, 2), (0, 9))))
    rows = await _collect(tmp_path, nemo_gym_stack, embedded_server, src, "num_repeats=2",
                          f"+agent_name={nemo_gym_stack.agent_name(env)}")
    assert [r["reward"] for _, r in rows] == [1.0] * 6
    task, row = rows[0]
    assert replay_verify(endpoint.url, task, row["response"])["reward"] == 1.0
    _post(endpoint.url + "/seed_session", task, {})  # the same calls without a cookie: a new session each
    status, verdict = _post(endpoint.url + "/verify", {**task, "response": row["response"]}, {})
    assert status == 200 and verdict["reward"] == 0.0
