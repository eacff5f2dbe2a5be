"""Options of the embedded resources server and of its head-server mode, and their CLI form.

`config_from_argv(argv)` parses `python -m gym_rollouts.embedded_resources` arguments into a
`ResourcesConfig` (a resources server) or, with `--head`, a `HeadConfig` (a stand-in for NeMo
Gym's head server); `config_to_argv(cfg)` is its inverse (what the launchers pass). A flag that
does not apply to the chosen mode is an error, never ignored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from urllib.parse import urlsplit

from .faults import MODES, parse_fault_spec


@dataclass(frozen=True)
class ResourcesConfig:
    host: str = "127.0.0.1"
    port: int = 0
    name: str = "embedded_resources"  # the config name: cookie `EmbeddedResourcesServer___<name>`
    faults: tuple[str, ...] = ()  # "ROUTE=MODE[:COUNT]" applied at start
    openapi: bool = True  # serve GET /openapi.json
    latency_ms: float = 0.0  # added to every answer of a served route
    slow_ms: float = 2000.0  # delay of a "slow" fault that names none
    log_size: int = 1000  # requests kept for GET /_control/requests

    def __post_init__(self) -> None:
        for spec in self.faults:
            mode = parse_fault_spec(spec)[1]
            if mode not in MODES:
                raise ValueError(f"--fault {spec!r}: unknown mode {mode!r}; use one of {list(MODES)}")
        if self.latency_ms < 0 or self.slow_ms < 0:
            raise ValueError("--latency-ms and --slow-ms must be >= 0")
        if self.log_size < 1:
            raise ValueError("--log-size must be >= 1")
        if not self.name or "=" in self.name or ";" in self.name or " " in self.name:
            raise ValueError(f"--name must be a non-empty cookie-safe word, got {self.name!r}")


@dataclass(frozen=True)
class HeadConfig:
    host: str = "127.0.0.1"
    port: int = 0
    envs: tuple[tuple[str, str], ...] = ()  # (config name, http://host:port)
    env_types: tuple[tuple[str, str], ...] = ()  # (config name, implementation); default: the name
    agents: tuple[tuple[str, str], ...] = ()  # (agent name, env config name)
    agent_types: tuple[tuple[str, str], ...] = ()  # (agent name, type); default simple_agent

    def __post_init__(self) -> None:
        envs = dict(self.envs)
        for name, url in self.envs:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or parts.port is None:
                raise ValueError(f"--env {name}={url}: the URL must look like http://HOST:PORT")
        for flag, pairs, known in (("--env-type", self.env_types, envs),
                                   ("--agent-type", self.agent_types, dict(self.agents))):
            for name, _ in pairs:
                if name not in known:
                    raise ValueError(f"{flag} {name}=...: {name!r} is not declared (have: {sorted(known)})")
        for agent, env in self.agents:
            if env not in envs:
                raise ValueError(f"--agent {agent}={env}: no --env named {env!r} (have: {sorted(envs)})")


def _pair(flag: str):
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"{flag} wants NAME=VALUE, got {text!r}")
        return name, value
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise ValueError(message)  # the caller decides how to report (exit 2, not SystemExit here)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m gym_rollouts.embedded_resources",
                                description="A NeMo-Gym-style resources server (or, with --head, head server).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    p.add_argument("--name")
    p.add_argument("--fault", action="append", default=None, metavar="ROUTE=MODE[:COUNT]")
    p.add_argument("--no-openapi", action="store_true", default=None)
    p.add_argument("--latency-ms", type=float)
    p.add_argument("--slow-ms", type=float)
    p.add_argument("--log-size", type=int)
    p.add_argument("--head", action="store_true", help="serve NeMo Gym's head-server routes instead")
    p.add_argument("--env", action="append", type=_pair("--env"), default=None, metavar="NAME=URL")
    p.add_argument("--env-type", action="append", type=_pair("--env-type"), default=None, metavar="NAME=IMPL")
    p.add_argument("--agent", action="append", type=_pair("--agent"), default=None, metavar="AGENT=ENV")
    p.add_argument("--agent-type", action="append", type=_pair("--agent-type"), default=None,
                   metavar="AGENT=TYPE")
    return p


_RESOURCE_ONLY = ("name", "fault", "no_openapi", "latency_ms", "slow_ms", "log_size")
_HEAD_ONLY = ("env", "env_type", "agent", "agent_type")


def parse_argv(argv: list[str]) -> tuple[ResourcesConfig | HeadConfig, int | None]:
    """(the config, --parent-pid); ValueError with the reason on anything wrong."""
    ns = _parser().parse_args(argv)
    wrong = _RESOURCE_ONLY if ns.head else _HEAD_ONLY
    used = [f"--{k.replace('_', '-')}" for k in wrong if getattr(ns, k) is not None]
    if used:
        raise ValueError(f"{', '.join(used)}: only {'without' if ns.head else 'with'} --head")
    if ns.head:
        cfg: ResourcesConfig | HeadConfig = HeadConfig(
            ns.host, ns.port, tuple(ns.env or ()), tuple(ns.env_type or ()), tuple(ns.agent or ()),
            tuple(ns.agent_type or ()))
    else:
        defaults = ResourcesConfig()
        cfg = ResourcesConfig(
            ns.host, ns.port, ns.name or defaults.name, tuple(ns.fault or ()), not ns.no_openapi,
            defaults.latency_ms if ns.latency_ms is None else ns.latency_ms,
            defaults.slow_ms if ns.slow_ms is None else ns.slow_ms,
            defaults.log_size if ns.log_size is None else ns.log_size)
    return cfg, ns.parent_pid


def config_from_argv(argv: list[str]) -> ResourcesConfig | HeadConfig:
    return parse_argv(argv)[0]


def config_to_argv(cfg: ResourcesConfig | HeadConfig) -> list[str]:
    """The CLI arguments that `config_from_argv` turns back into `cfg` (defaults left out)."""
    out = [] if cfg.host == "127.0.0.1" else ["--host", cfg.host]
    out += ["--port", str(cfg.port)] if cfg.port else []
    if isinstance(cfg, HeadConfig):
        out.append("--head")
        for flag, pairs in (("--env", cfg.envs), ("--env-type", cfg.env_types), ("--agent", cfg.agents),
                            ("--agent-type", cfg.agent_types)):
            for name, value in pairs:
                out += [flag, f"{name}={value}"]
        return out
    d = ResourcesConfig()
    out += ["--name", cfg.name] if cfg.name != d.name else []
    for spec in cfg.faults:
        out += ["--fault", spec]
    out += [] if cfg.openapi else ["--no-openapi"]
    for flag, value, default in (("--latency-ms", cfg.latency_ms, d.latency_ms), ("--slow-ms", cfg.slow_ms, d.slow_ms),
                                 ("--log-size", cfg.log_size, d.log_size)):
        out += [flag, str(value)] if value != default else []
    return out
