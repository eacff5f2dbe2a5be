"""The config a NeMo Gym user would hand to ``ng_run``, for the NeMo Gym test tier (pure data).

Owns: for environments of the nemo-gym wheel, their shipped resources-server and
``<env>_simple_agent`` blocks (read from ``resources_servers/<env>/configs/*.yaml``), one
``policy_model`` vllm_model block the agents point at, fixed free loopback ports
(``plan_stack``); and the reverse, reading a running stack's layout from its head server's
``/server_instances`` and ``/global_config_dict_yaml`` answers (``endpoints_from_head``).
Processes are ``nemo_gym``'s job; see docs/nemo_gym_tier.md.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODEL_INSTANCE = "policy_model"  # the model-server name NeMo Gym's shipped agent configs reference
UNUSED_POLICY_URL = "http://127.0.0.1:1/v1"  # nothing listens on port 1: a model call fails fast
AGENT_DIR = ("responses_api_agents", "simple_agent")
MODEL_DIR = ("responses_api_models", "vllm_model")
NEMO_GYM_DEFAULT_HEAD_PORT = 11000


class NemoGymStartError(RuntimeError):
    """The stack could not be configured, exited, or was not healthy in time (message: log tail)."""


@dataclass(frozen=True)
class EnvSpec:
    """One environment of the wheel. ``extra`` replaces keys of its resources-server block (e.g.
    math_with_judge's ``{"should_use_judge": False}``), ``agent_extra`` keys of its agent block."""

    name: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    agent_extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvEndpoint:
    """Where one environment and its agent listen. ``instance`` is the config name the agent
    references (``example_session_state_mgmt_resources_server`` for example_session_state_mgmt)."""

    env: str
    instance: str
    url: str
    agent: str | None
    agent_url: str | None


def free_port(host: str = "127.0.0.1", taken: Iterable[int] = ()) -> int:
    """A TCP port free right now and not in ``taken`` (bind-to-0; a race is possible but rare)."""
    taken = set(taken)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in taken and port != NEMO_GYM_DEFAULT_HEAD_PORT:
            return port


def _as_spec(env: str | EnvSpec) -> EnvSpec:
    return env if isinstance(env, EnvSpec) else EnvSpec(str(env))


def shipped_blocks(env: str, sp: Path) -> tuple[str, dict, str | None, dict | None]:
    """From ``resources_servers/<env>/configs/*.yaml`` in the wheel: (resources-server instance name,
    its block, the simple_agent instance naming it or None, that agent's block or None)."""
    folder = sp / "resources_servers" / env
    if not (folder / "app.py").is_file():
        known = sorted(p.parent.name for p in (sp / "resources_servers").glob("*/app.py"))
        raise NemoGymStartError(f"no environment {env!r} in {sp / 'resources_servers'}; known: {', '.join(known)}")
    files = sorted((folder / "configs").glob("*.yaml"), key=lambda p: (p.stem != env, p.name))
    for path in files:
        doc = yaml.safe_load(path.read_text()) or {}
        for key, value in doc.items():
            block = (value.get("resources_servers") or {}).get(env) if isinstance(value, dict) else None
            if isinstance(block, dict):
                agent, agent_block = _shipped_agent(doc, key)
                return key, copy.deepcopy(block), agent, agent_block
    raise NemoGymStartError(f"no resources_servers.{env} block in {folder / 'configs'}/*.yaml: this launcher "
                            "starts environments from their shipped config only; pick another environment")



def _shipped_agent(doc: Mapping, instance: str) -> tuple[str | None, dict | None]:
    for key, value in doc.items():
        if not isinstance(value, dict):
            continue
        block = (value.get("responses_api_agents") or {}).get("simple_agent")
        if isinstance(block, dict) and (block.get("resources_server") or {}).get("name") == instance:
            return key, copy.deepcopy(block)
    return None, None


@dataclass(frozen=True)
class StackPlan:
    """A written-out stack: the config dict and where each server will listen (pure data)."""

    config: dict
    head_port: int
    endpoints: dict[str, EnvEndpoint]
    model_url: str
    host: str = "127.0.0.1"

    def urls(self) -> list[str]:
        out = [f"http://{self.host}:{self.head_port}"]
        for ep in self.endpoints.values():
            out += [ep.url] + ([ep.agent_url] if ep.agent_url else [])
        return out + [self.model_url]

    def server_dirs(self) -> list[tuple[str, str]]:
        """The (type, name) folders ng_run makes a venv for."""
        dirs = [("resources_servers", ep.env) for ep in self.endpoints.values()]
        return dirs + [AGENT_DIR, MODEL_DIR]


def plan_stack(
    envs: Sequence[str | EnvSpec],
    *,
    sp: Path,
    head_port: int | None = None,
    host: str = "127.0.0.1",
    policy_base_url: str | None = None,
    policy_model_name: str = "unused",
    policy_api_key: str = "EMPTY",
    model_extra: Mapping[str, Any] | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> StackPlan:
    """The ng_run config for ``envs`` with fixed free ports (pure but for picking the ports)."""
    specs = [_as_spec(e) for e in envs]
    if not specs or len({s.name for s in specs}) != len(specs):
        raise NemoGymStartError(f"give each environment once (got {[s.name for s in specs]})")
    taken: list[int] = []

    def port() -> int:
        taken.append(free_port(host, taken))
        return taken[-1]

    head_port = head_port or port()
    taken.append(head_port)
    config: dict[str, Any] = {"head_server": {"host": host, "port": head_port}}
    endpoints = {}
    for spec in specs:
        instance, block, agent, agent_block = shipped_blocks(spec.name, sp)
        block.update({"host": host, "port": port(), **spec.extra})
        config[instance] = {"resources_servers": {spec.name: block}}
        agent = agent or f"{spec.name}_simple_agent"
        agent_block = agent_block or {"entrypoint": "app.py"}
        agent_block.update({"host": host, "port": port(),
                            "resources_server": {"type": "resources_servers", "name": instance},
                            "model_server": {"type": "responses_api_models", "name": MODEL_INSTANCE},
                            **spec.agent_extra})
        config[agent] = {"responses_api_agents": {"simple_agent": agent_block}}
        endpoints[spec.name] = EnvEndpoint(spec.name, instance, f"http://{host}:{block['port']}",
                                           agent, f"http://{host}:{agent_block['port']}")
    model = {"entrypoint": "app.py", "host": host, "port": port(),
             "base_url": policy_base_url or UNUSED_POLICY_URL, "api_key": policy_api_key,
             "model": policy_model_name, "return_token_id_information": False,
             "uses_reasoning_parser": False, **dict(model_extra or {})}
    config[MODEL_INSTANCE] = {"responses_api_models": {"vllm_model": model}}
    config.update(copy.deepcopy(dict(extra_config or {})))
    return StackPlan(config, head_port, endpoints, f"http://{host}:{model['port']}", host)


def endpoints_from_head(instances: Sequence[Mapping[str, Any]], config_yaml: str) -> dict[str, EnvEndpoint]:
    """The environments of a running stack, from its head server's ``/server_instances`` (where
    each server listens) and ``/global_config_dict_yaml`` (which agent names which environment)."""
    config = yaml.safe_load(config_yaml) or {}
    urls = {i.get("config_path"): i.get("url") for i in instances}
    agents: dict[str, str] = {}
    for key, value in config.items():
        blocks = (value.get("responses_api_agents") or {}).values() if isinstance(value, dict) else ()
        for block in blocks:
            agents.setdefault(((block or {}).get("resources_server") or {}).get("name"), key)
    out = {}
    for inst in instances:
        if inst.get("server_type") == "resources_servers":
            agent = agents.get(inst["config_path"])
            out[inst["name"]] = EnvEndpoint(inst["name"], inst["config_path"], inst["url"], agent, urls.get(agent))
    return out
