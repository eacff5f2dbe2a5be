"""doctor's check 10 (environments) against our embedded NeMo-Gym-style servers: an environment up
with its tools, one down (FAIL with the ng_run fix), one that cannot say its tools (WARN), a head
server listing an agent we do not run, and an input row whose agent maps to nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import orjson
import pytest

from doctor_helpers import doctor_on
from gym_rollouts.doctor import Status
from gym_rollouts.embedded_resources import HeadConfig, resources_subprocess


@pytest.fixture(scope="module")
def envs() -> Iterator[tuple]:
    with resources_subprocess(["--name", "up"]) as up, resources_subprocess(["--name", "blind", "--no-openapi"]) as blind:
        head = HeadConfig(envs=(("up", up.url),), agents=(("up_simple_agent", "up"), ("swe", "up")),
                          agent_types=(("swe", "swe_agents"),))
        with resources_subprocess(head) as head_proc:
            yield up, blind, head_proc


def _input(tmp_path: Path, agent: str) -> str:
    row = {"responses_create_params": {"input": "weather in Oslo?", "tools": [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]},
        "agent_ref": {"name": agent}}
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps(row) + b"\n")
    return f"input_jsonl_fpath={path}"


def _env_findings(report):
    return [f for f in report.findings if f.check == "environments"]


async def test_an_environment_that_is_up_passes_with_its_tools(tmp_path: Path, embedded_server, envs) -> None:
    up, _, _ = envs
    report = await doctor_on(embedded_server.base_url, "resource=nemo_gym", f"resource.params.url={up.url}",
                             _input(tmp_path, "any_agent"))
    [finding] = _env_findings(report)
    assert finding.status is Status.PASS and "get_weather" in finding.evidence and finding.number == 10


async def test_an_environment_that_is_down_fails_with_the_fix(tmp_path: Path, embedded_server) -> None:
    report = await doctor_on(embedded_server.base_url, "resource=nemo_gym", "resource.params.url=http://127.0.0.1:9",
                             _input(tmp_path, "a"))
    [finding] = _env_findings(report)
    assert finding.status is Status.FAIL and "not reachable" in finding.evidence and "ng_run" in finding.fix
    assert report.exit_code == 1


async def test_a_server_that_cannot_say_its_tools_is_a_warning(tmp_path: Path, embedded_server, envs) -> None:
    _, blind, _ = envs
    report = await doctor_on(embedded_server.base_url, "resource=nemo_gym", f"resource.params.url={blind.url}",
                             _input(tmp_path, "a"))
    [finding] = _env_findings(report)
    assert finding.status is Status.WARN and "openapi" in finding.evidence


async def test_head_server_agents_and_unmapped_rows(tmp_path: Path, embedded_server, envs) -> None:
    _, _, head = envs
    report = await doctor_on(embedded_server.base_url, "resource=nemo_gym", f"resource.params.head_url={head.url}",
                             _input(tmp_path, "swe"))
    found = {f.summary.split(" ")[0]: f for f in _env_findings(report)}
    assert "swe (swe_agents)" in found["NeMo"].evidence and found["NeMo"].status is Status.PASS
    row = next(f for f in _env_findings(report) if f.summary.startswith("input line 1"))
    assert row.status is Status.FAIL and "NeMo Gym's 'swe_agents' agent" in row.evidence
