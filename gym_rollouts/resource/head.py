"""Discovery through a running NeMo Gym head server (what ``ng_run`` starts, by default on
127.0.0.1:11000): which agents exist, which resources server each names, and where those run.

The head server's ``GET /global_config_dict_yaml`` answers a JSON string holding the YAML of the
whole composed config (NeMo Gym's own clients resolve every server from it). In it, a top-level
block ``NAME: {resources_servers: {IMPL: {host, port, ...}}}`` is an environment and
``NAME: {responses_api_agents: {IMPL: {resources_server: {type, name}, max_steps, ...}}}`` an
agent naming its environment. Hosts that mean "every interface" (``0.0.0.0``, ``::``, empty) are
reached through the head server's own host. ``parse_global_config`` is pure (unit-tested);
``discover`` fetches and parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping  # isinstance() on it is far cheaper than on typing.Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import yaml

from gym_rollouts.errors import StartupError, TransportError
from gym_rollouts.transport.client import HttpTransport

DEFAULT_HEAD_URL = "http://127.0.0.1:11000"
SIMPLE_AGENT = "simple_agent"
_ANY_HOST = ("", "0.0.0.0", "::", "[::]")
# Keys of a simple_agent block that say where it runs or what it is made of (not how it behaves).
_AGENT_STRUCTURE = frozenset({"entrypoint", "host", "port", "name", "domain", "description", "datasets",
                              "resources_server", "model_server", "num_workers", "verified", "license"})


@dataclass(frozen=True)
class HeadAgent:
    name: str
    impl: str  # NeMo Gym's agent implementation, e.g. simple_agent
    resources_server: str | None
    max_steps: int | None
    other_keys: tuple[str, ...] = ()  # behaviour keys we do not apply (reported)


@dataclass(frozen=True)
class HeadDirectory:
    url: str
    agents: dict[str, HeadAgent] = field(default_factory=dict)
    environments: dict[str, str] = field(default_factory=dict)  # resources server name -> URL

    def environment_of(self, agent: str) -> str | None:
        """The URL of the environment ``agent`` names (None: unknown agent or no such server)."""
        info = self.agents.get(agent)
        return self.environments.get(info.resources_server) if info and info.resources_server else None


def head_url_from(value: Any) -> str:
    """``http://host:port`` from a URL string or NeMo Gym's ``head_server: {host, port}``."""
    if isinstance(value, Mapping):
        host, port = value.get("host") or "127.0.0.1", value.get("port") or 11000
        return f"http://{host}:{port}"
    return str(value).strip().rstrip("/")


def _server_url(block: Mapping[str, Any], head_host: str) -> str | None:
    host, port = block.get("host"), block.get("port")
    if port in (None, ""):
        return None
    host = head_host if host is None or str(host) in _ANY_HOST else str(host)
    return f"http://{host}:{port}"


def _only_impl(block: Any) -> tuple[str, Mapping[str, Any]] | None:
    if isinstance(block, Mapping) and len(block) == 1:
        impl, inner = next(iter(block.items()))
        if isinstance(inner, Mapping):
            return str(impl), inner
    return None


def parse_global_config(config: Mapping[str, Any], head_url: str) -> HeadDirectory:
    """The agents and environments of a NeMo Gym global config (see module doc)."""
    head_host = urlsplit(head_url).hostname or "127.0.0.1"
    directory = HeadDirectory(url=head_url)
    for name, block in config.items():
        if not isinstance(block, Mapping):
            continue
        env = _only_impl(block.get("resources_servers"))
        if env is not None:
            url = _server_url(env[1], head_host)
            if url:
                directory.environments[str(name)] = url
        agent = _only_impl(block.get("responses_api_agents"))
        if agent is not None:
            impl, inner = agent
            ref = inner.get("resources_server")
            env_name = str(ref.get("name")) if isinstance(ref, Mapping) and ref.get("name") else None
            steps = inner.get("max_steps")
            directory.agents[str(name)] = HeadAgent(
                name=str(name), impl=impl, resources_server=env_name,
                max_steps=steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None,
                other_keys=tuple(sorted(str(k) for k in inner if k not in _AGENT_STRUCTURE and k != "max_steps")))
    return directory


async def discover(transport: HttpTransport, head_url: str, timeout_s: float = 15.0) -> HeadDirectory:
    """Fetch and parse the head server's global config; unreachable or unreadable -> StartupError."""
    url = head_url_from(head_url)
    try:
        status, raw = await transport.get(url + "/global_config_dict_yaml", timeout_s=timeout_s, control=True)
    except TransportError as exc:
        raise StartupError(
            f"no NeMo Gym head server reachable at {url} ({exc.kind}): {exc}. Start your environments with "
            f"NeMo Gym's ng_run (its head server listens on {DEFAULT_HEAD_URL} unless head_server says "
            f"otherwise), or point at one environment with resource.params.url=http://host:port") from None
    if status != 200:
        raise StartupError(f"{url}/global_config_dict_yaml answered HTTP {status}; is {url} a NeMo Gym head server "
                           f"(started by ng_run)?")
    try:
        text = orjson.loads(raw)
        config = yaml.safe_load(text) if isinstance(text, str) else None
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise StartupError(f"{url}/global_config_dict_yaml is not NeMo Gym's config (JSON string of YAML): {exc}") from None
    if not isinstance(config, Mapping):
        raise StartupError(f"{url}/global_config_dict_yaml holds no config mapping; is this a NeMo Gym head server?")
    return parse_global_config(config, url)
