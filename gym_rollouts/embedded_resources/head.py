"""A stand-in for NeMo Gym's head server (routing tests without Ray or `ng_run`).

What NeMo Gym 0.4.0 serves (read from `nemo_gym/server_utils.py::HeadServer` and
`nemo_gym/cli/env.py`, which fills the instance list):
- `GET /` -> `{"status": "ok"}`.
- `GET /server_instances` -> a JSON list with one object per server `ng_run` started (every
  top-level block `<config name>: {<server_type>: {<implementation>: {entrypoint: ..., ...}}}`),
  the model dump of `ServerInstanceDisplayConfig`, keys in this order: `config_path` (= the
  config name), `dir_path` (the implementation's folder), `entrypoint`, `host`, `name` (= the
  IMPLEMENTATION, e.g. "simple_agent" or "example_session_state_mgmt", not the config name),
  `pid`, `port`, `process_name` (= the config name), `server_type` ("resources_servers",
  "responses_api_agents", "responses_api_models"), `start_time`, `status` (null),
  `uptime_seconds` (null), `url` ("http://host:port", null without host and port). The head server
  itself is not listed.
- `GET /global_config_dict_yaml` -> a JSON *string* (FastAPI encodes the returned str) holding
  `OmegaConf.to_yaml(global config)`: the server blocks (agents name their environment as
  `resources_server: {type: resources_servers, name: <env config name>}` and their model as
  `model_server: {type: responses_api_models, name: policy_model}`; every server block gets `host`
  and `port`), `head_server: {host, port}`, and bookkeeping keys (`config_paths`,
  `disallowed_ports`, `port_range_low`/`high`, `use_absolute_ip`, `dry_run`, ...).
  `OmegaConf.to_yaml` does not resolve interpolations, so the shipped vLLM model block keeps
  `base_url: ${policy_base_url}` (we reproduce that; not verified against a live `ng_run`).

What this stand-in serves, from `--env NAME=URL [--env-type NAME=IMPL] --agent AGENT=NAME
[--agent-type AGENT=TYPE]`: one `resources_servers` block per env (implementation: IMPL, default
NAME) with the URL's host/port, one `responses_api_agents` block per agent (type default
"simple_agent"), and a `policy_model` vllm_model block with placeholder `policy_*` values.
Deviations, on purpose: we run no agent or model server, so their instances and blocks carry no
host/port (`url` null), and every `pid` is null; `dir_path` is relative.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web

from .config import HeadConfig
from .site import LoopbackSite, json_response as _json

POLICY_MODEL = "policy_model"
_INSTANCE_KEYS = ("config_path", "dir_path", "entrypoint", "host", "name", "pid", "port", "process_name",
                  "server_type", "start_time", "status", "uptime_seconds", "url")


def _instance(config_name: str, server_type: str, impl: str, host: str | None, port: int | None,
              start_time: float) -> dict[str, Any]:
    values = {"config_path": config_name, "dir_path": f"{server_type}/{impl}", "entrypoint": "app.py",
              "host": host, "name": impl, "pid": None, "port": port, "process_name": config_name,
              "server_type": server_type, "start_time": start_time, "status": None, "uptime_seconds": None,
              "url": f"http://{host}:{port}" if host and port else None}
    return {k: values[k] for k in _INSTANCE_KEYS}


def _server_blocks(cfg: HeadConfig) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(config name, server type, implementation, inner block) of every server, in config order."""
    env_types, agent_types = dict(cfg.env_types), dict(cfg.agent_types)
    blocks = []
    for name, url in cfg.envs:
        parts = urlsplit(url)
        blocks.append((name, "resources_servers", env_types.get(name, name), {
            "entrypoint": "app.py", "domain": "other", "verified": False,
            "host": parts.hostname, "port": parts.port}))
    for agent, env_name in cfg.agents:
        blocks.append((agent, "responses_api_agents", agent_types.get(agent, "simple_agent"), {
            "entrypoint": "app.py",
            "resources_server": {"type": "resources_servers", "name": env_name},
            "model_server": {"type": "responses_api_models", "name": POLICY_MODEL}}))
    blocks.append((POLICY_MODEL, "responses_api_models", "vllm_model", {
        "entrypoint": "app.py", "base_url": "${policy_base_url}", "api_key": "${policy_api_key}",
        "model": "${policy_model_name}"}))
    return blocks


def server_instances(cfg: HeadConfig, start_time: float) -> list[dict[str, Any]]:
    return [_instance(name, kind, impl, block.get("host"), block.get("port"), start_time)
            for name, kind, impl, block in _server_blocks(cfg)]


def global_config(cfg: HeadConfig, head_host: str, head_port: int) -> dict[str, Any]:
    out: dict[str, Any] = {"policy_base_url": "http://127.0.0.1:8000/v1", "policy_api_key": "EMPTY",
                           "policy_model_name": "policy", "config_paths": []}
    for name, kind, impl, block in _server_blocks(cfg):
        out[name] = {kind: {impl: block}}
    ports = [block["port"] for _, _, _, block in _server_blocks(cfg) if block.get("port")]
    out.update({"head_server": {"host": head_host, "port": head_port}, "use_absolute_ip": False,
                "port_range_low": 10001, "port_range_high": 20000, "disallowed_ports": [head_port, *ports],
                "skip_venv_if_present": False, "dry_run": False})
    return out


def global_config_yaml(cfg: HeadConfig, head_host: str, head_port: int) -> str:
    return yaml.safe_dump(global_config(cfg, head_host, head_port), sort_keys=False)


class HeadServer(LoopbackSite):
    """`async with HeadServer(HeadConfig(...)) as head:` -> `head.url` (see module doc)."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__(cfg.host, cfg.port)
        self.cfg = cfg
        self.start_time = time.time()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._health)
        app.router.add_get("/server_instances", self._instances)
        app.router.add_get("/global_config_dict_yaml", self._config)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _instances(self, request: web.Request) -> web.Response:
        return _json(server_instances(self.cfg, self.start_time))

    async def _config(self, request: web.Request) -> web.Response:
        return _json(global_config_yaml(self.cfg, self.host, self.port))

    async def _not_found(self, request: web.Request) -> web.Response:
        return _json({"detail": "Not Found"}, 404)
