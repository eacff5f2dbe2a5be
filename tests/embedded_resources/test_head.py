"""Wire tests: the head-server mode serves NeMo Gym's discovery shapes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import yaml
from omegaconf import OmegaConf

from gym_rollouts.embedded_resources import HeadConfig, resources_subprocess

INSTANCE_KEYS = ["config_path", "dir_path", "entrypoint", "host", "name", "pid", "port", "process_name",
                 "server_type", "start_time", "status", "uptime_seconds", "url"]


def _get(url: str) -> tuple[str, object]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.headers.get("Content-Type"), json.loads(resp.read())


@pytest.fixture(scope="module")
def head():
    cfg = HeadConfig(envs=(("counter_env", "http://127.0.0.1:12001"), ("weather_env", "http://127.0.0.1:12002")),
                     env_types=(("counter_env", "example_session_state_mgmt"),),
                     agents=(("counter_agent", "counter_env"), ("weather_agent", "weather_env")),
                     agent_types=(("weather_agent", "my_agent"),))
    with resources_subprocess(cfg) as proc:
        yield proc


def test_health_and_unknown_routes(head):
    assert _get(head.url + "/") == ("application/json", {"status": "ok"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(head.url + "/seed_session", timeout=10)
    assert err.value.code == 404 and json.loads(err.value.read()) == {"detail": "Not Found"}


def test_server_instances_shape(head):
    _, instances = _get(head.url + "/server_instances")
    assert isinstance(instances, list) and all(list(i) == INSTANCE_KEYS for i in instances)
    by_process = {i["process_name"]: i for i in instances}
    assert set(by_process) == {"counter_env", "weather_env", "counter_agent", "weather_agent", "policy_model"}
    counter = by_process["counter_env"]
    assert counter["server_type"] == "resources_servers" and counter["config_path"] == "counter_env"
    assert counter["name"] == "example_session_state_mgmt"  # the implementation, not the config name
    assert (counter["host"], counter["port"], counter["url"]) == ("127.0.0.1", 12001, "http://127.0.0.1:12001")
    assert by_process["weather_env"]["name"] == "weather_env"  # implementation defaults to the name
    agent = by_process["weather_agent"]
    assert (agent["server_type"], agent["name"], agent["url"]) == ("responses_api_agents", "my_agent", None)
    assert by_process["counter_agent"]["name"] == "simple_agent"
    assert by_process["policy_model"]["server_type"] == "responses_api_models"


def test_global_config_is_a_json_string_of_yaml(head):
    content_type, text = _get(head.url + "/global_config_dict_yaml")
    assert content_type == "application/json" and isinstance(text, str)
    cfg = yaml.safe_load(text)
    assert cfg["head_server"] == {"host": "127.0.0.1", "port": head.port}
    agent = cfg["counter_agent"]["responses_api_agents"]["simple_agent"]
    assert agent["resources_server"] == {"type": "resources_servers", "name": "counter_env"}
    assert agent["model_server"] == {"type": "responses_api_models", "name": "policy_model"}
    assert cfg["weather_agent"]["responses_api_agents"]["my_agent"]["resources_server"]["name"] == "weather_env"
    env = cfg["counter_env"]["resources_servers"]["example_session_state_mgmt"]
    assert (env["host"], env["port"]) == ("127.0.0.1", 12001)
    assert cfg["weather_env"]["resources_servers"]["weather_env"]["port"] == 12002
    assert head.port in cfg["disallowed_ports"]
    # NeMo Gym reads it with OmegaConf, where the model block's interpolations resolve
    model = OmegaConf.create(text).policy_model.responses_api_models.vllm_model
    assert model.base_url == cfg["policy_base_url"] and model.api_key == "EMPTY"
