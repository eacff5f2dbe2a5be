"""Agent -> environment routing: NeMo Gym's head-server config (pure parsing), mixed-agent inputs
against a head server (our embedded stand-in, two environments), explicit ``environments``
mappings (remote and in-process in one run), and rows refused up front with their line."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from gym_rollouts.embedded_resources import HeadConfig, ResourcesControl, resources_subprocess
from gym_rollouts.errors import ConfigError, InputError
from gym_rollouts.resource.head import HeadAgent, parse_global_config
from nemo_gym_helpers import collect, counter_row, metrics, weather_row

WEATHER_AGENT, COUNTER_AGENT = "weather_simple_agent", "counter_simple_agent"


def test_the_head_config_maps_agents_to_environment_urls() -> None:
    config = {
        "weather": {"resources_servers": {"weather_impl": {"host": "0.0.0.0", "port": 12001, "entrypoint": "app.py"}}},
        "weather_simple_agent": {"responses_api_agents": {"simple_agent": {
            "resources_server": {"type": "resources_servers", "name": "weather"}, "max_steps": 5,
            "model_server": {"type": "responses_api_models", "name": "policy_model"}, "host": "127.0.0.1",
            "port": 12002, "datasets": [], "custom_knob": 1}}},
        "swe_agent": {"responses_api_agents": {"swe_agents": {"resources_server": {"name": "weather"}}}},
        "policy_model": {"responses_api_models": {"vllm_model": {"base_url": "${policy_base_url}"}}},
        "head_server": {"host": "127.0.0.1", "port": 11000},
        "config_paths": ["a.yaml"],
    }
    head = parse_global_config(config, "http://10.0.0.5:11000")
    assert head.environments == {"weather": "http://10.0.0.5:12001"}  # 0.0.0.0: reached via the head's host
    assert head.agents["weather_simple_agent"] == HeadAgent("weather_simple_agent", "simple_agent", "weather", 5,
                                                            ("custom_knob",))
    assert head.agents["swe_agent"].impl == "swe_agents"
    assert head.environment_of("weather_simple_agent") == "http://10.0.0.5:12001"
    assert head.environment_of("policy_model") is None


@pytest.fixture(scope="module")
def two_envs() -> Iterator[tuple]:
    with resources_subprocess(["--name", "weather"]) as weather, resources_subprocess(["--name", "counter"]) as counter:
        head_cfg = HeadConfig(envs=(("weather", weather.url), ("counter", counter.url)),
                              agents=((WEATHER_AGENT, "weather"), (COUNTER_AGENT, "counter"), ("swe_agent", "weather")),
                              agent_types=(("swe_agent", "swe_agents"),))
        with resources_subprocess(head_cfg) as head:
            yield weather, counter, head


def _posts(proc) -> list[str]:
    return [r["path"] for r in ResourcesControl(proc.url).requests() if r["method"] == "POST"]


async def test_a_mixed_file_runs_against_the_head_server(tmp_path: Path, embedded_server, two_envs) -> None:
    weather, counter, head = two_envs
    for proc in (weather, counter):
        ResourcesControl(proc.url).clear_requests()
    rows = [weather_row("Paris", agent=WEATHER_AGENT), counter_row(3, 4, agent=COUNTER_AGENT),
            weather_row("Oslo", agent=WEATHER_AGENT), counter_row(5, 2, agent=COUNTER_AGENT)]
    result, out, failures = await collect(tmp_path, embedded_server.base_url, rows, "resource=nemo_gym",
                                          f"resource.params.head_url={head.url}", "num_repeats=2")
    assert failures == [] and len(out) == 8 and all(r["reward"] == 1.0 for r in out)
    assert _posts(weather).count("/verify") == 4 and _posts(counter).count("/verify") == 4
    assert "/get_weather" not in _posts(counter) and "/increment_counter" not in _posts(weather)
    entries = {e["agent_ref"]["name"]: e["agent_metrics"] for e in metrics(tmp_path)}
    assert set(entries) == {WEATHER_AGENT, COUNTER_AGENT}  # aggregated per agent, as NeMo Gym does
    assert entries[WEATHER_AGENT]["count"] == 4 and entries[COUNTER_AGENT]["mean/reward"] == 1.0


async def test_agent_name_selects_the_agent_for_rows_without_agent_ref(tmp_path: Path, embedded_server,
                                                                        two_envs) -> None:
    _, _, head = two_envs
    _, out, _ = await collect(tmp_path, embedded_server.base_url, [counter_row(1, 2)], "resource=nemo_gym",
                              f"resource.params.head_url={head.url}", f"+agent_name={COUNTER_AGENT}")
    assert out[0]["reward"] == 1.0 and out[0]["agent_ref"] == {"name": COUNTER_AGENT}


@pytest.mark.parametrize("row, expected", [
    (weather_row(agent="nobody"), r":2: agent 'nobody' maps to no environment: map it with environments\.nobody="),
    (weather_row(agent="swe_agent"), r":2: agent 'swe_agent' is NeMo Gym's 'swe_agents' agent"),
    (weather_row(), r":2: the row has no agent_ref and no agent_name was given: pass \+agent_name="),
    ({"responses_create_params": {"input": "hi", "tools": [{"type": "function", "name": "lookup", "parameters": {}}]},
      "agent_ref": {"name": WEATHER_AGENT}},
     r":2: offers the model tool\(s\) lookup that environment 'weather' \(http://127\.0\.0\.1:\d+\) does not serve"),
])
async def test_rows_the_head_server_cannot_serve_are_refused_with_their_line(
        tmp_path: Path, embedded_server, two_envs, row: dict, expected: str) -> None:
    _, _, head = two_envs
    with pytest.raises(InputError, match=expected):
        await collect(tmp_path, embedded_server.base_url, [weather_row(agent=WEATHER_AGENT), row],
                      "resource=nemo_gym", f"resource.params.head_url={head.url}")


async def test_an_explicit_mapping_mixes_remote_and_in_process_environments(tmp_path: Path, embedded_server,
                                                                            two_envs) -> None:
    weather, _, _ = two_envs
    ours = {"responses_create_params": {"input": "What is (2 + 3) * 4?"}, "expected_answer": "20",
            "agent_ref": {"name": "calc"}}
    _, out, failures = await collect(
        tmp_path, embedded_server.base_url, [weather_row(agent="remote_weather"), ours],
        f"+environments.remote_weather={weather.url}", "+environments.calc=arithmetic")
    assert failures == [] and [r["reward"] for r in out] == [1.0, 1.0]
    by_agent = {r["agent_ref"]["name"]: r for r in out}
    assert "num_tool_calls" in by_agent["remote_weather"]  # scored by the environment's /verify
    assert by_agent["calc"]["used_tool"] == 1.0  # scored by our arithmetic resource


@pytest.mark.parametrize("spec, message", [
    ("nonsense_resource", "is neither an http\\(s\\) URL nor one of our resources"),
    ("{url: http://127.0.0.1:9, color: red}", "mapping with 'url'"),
])
async def test_a_bad_mapping_is_a_config_error(tmp_path: Path, embedded_server, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await collect(tmp_path, embedded_server.base_url, [weather_row(agent="a")], f"+environments.a={spec}")


async def test_rows_for_another_environment_are_refused_by_our_resources(tmp_path: Path, embedded_server) -> None:
    """NeMo Gym's weather rows under the default resource: refused up front, never scored 0."""
    with pytest.raises(InputError, match=r":1: no environment is chosen for this input: the default resource is the"):
        await collect(tmp_path, embedded_server.base_url, [weather_row()])
    with pytest.raises(InputError, match=r":1: offers the model tool\(s\) get_weather that resource 'arithmetic'"):
        await collect(tmp_path, embedded_server.base_url, [weather_row()], "resource=arithmetic")
    with pytest.raises(InputError, match=r":1: agent 'mcqa_simple_agent' maps to no environment"):
        await collect(tmp_path, embedded_server.base_url,
                      [{"responses_create_params": {"input": "Pick A or B"}, "expected_answer": "B",
                        "agent_ref": {"name": "mcqa_simple_agent"}}], "resource=exact_match")
    with pytest.raises(InputError, match=r":1: no 'expected_answer' to score against"):
        await collect(tmp_path, embedded_server.base_url, [{"responses_create_params": {"input": "Pick A or B"}}],
                      "resource=exact_match")


def test_required_row_fields_come_from_the_request_schemas() -> None:
    from gym_rollouts.resource.nemo_gym import required_row_fields, tools_from_openapi

    body = lambda name: {"post": {"requestBody": {"content": {"application/json": {"schema": {  # noqa: E731
        "$ref": f"#/components/schemas/{name}"}}}}}}
    doc = {"paths": {"/seed_session": body("Seed"), "/verify": body("Verify"), "/increment_counter": body("Inc"),
                     "/get_counter_value": {"post": {}}, "/aggregate_metrics": {"post": {}}, "/": {"get": {}}},
           "components": {"schemas": {"Seed": {"required": ["initial_count"]},
                                      "Verify": {"required": ["responses_create_params", "response", "expected_count"]}}}}
    assert required_row_fields(doc) == {"initial_count", "responses_create_params", "expected_count"}
    assert tools_from_openapi(doc) == {"increment_counter", "get_counter_value"}
    assert required_row_fields({"paths": {}}) == frozenset() and tools_from_openapi({}) is None
