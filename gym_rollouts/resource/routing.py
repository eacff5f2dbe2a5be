"""Which environment each row goes to: agent name -> resource, for one run.

Sources, in order of precedence for an agent name:

1. ``environments.<agent>``: an explicit mapping. A value is an environment URL or a list of
   replica URLs (a NeMo Gym resources server), a mapping ``{url: ..., max_in_flight: N,
   timeout_s: S}``, or one of our in-process resources by name (``arithmetic``, ``weather``, ...:
   a ``conf/resource/`` option, or an installed plugin's: resource/plugins.py) or class
   (``package.module:Class``).
2. The NeMo Gym head server (``resource=nemo_gym resource.params.head_url=...``, or
   ``resource=nemo_gym`` alone: ``head_server`` from the config, else NeMo Gym's default
   127.0.0.1:11000): each agent of its config names its resources server. Only NeMo Gym's
   ``simple_agent`` (the tool loop we run) is accepted; other agent kinds are refused by name.
3. The configured ``resource`` for the run's default agent (``agent_name``, else
   ``<resource>_agent``): rows without ``agent_ref`` get that name. With
   ``resource.params.url`` (one NeMo Gym environment), rows of one other agent name are taken too
   when ``agent_name`` is not set (a NeMo Gym file carries its agent's name); a second name is an
   error asking for a mapping.

``row_problem`` is checked for every input row before any request: the row's agent must map to an
environment, every tool the row offers the model must be one that environment serves, and the
environment's own row check must pass. ``open`` discovers the head server and starts every
environment (reachability and served tools are checked there); ``close`` stops them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping  # isinstance() on it is far cheaper than on typing.Mapping
from typing import Any

import yaml

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.errors import ConfigError, StartupError
from gym_rollouts.resource.base import Resource, ResourceContext, load_resource, resource_from_class
from gym_rollouts.resource.head import DEFAULT_HEAD_URL, SIMPLE_AGENT, HeadDirectory, discover, head_url_from
from gym_rollouts.resource.nemo_gym import DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT_S, NemoGymEnvironment, normalize_urls
from gym_rollouts.resource.plugins import discover as discover_plugins, option_node
from gym_rollouts.typecheck import MAPPING

log = logging.getLogger(__name__)
AGENT_REF = "agent_ref"
_REMOTE_KEYS = frozenset({"url", "max_in_flight", "timeout_s"})


@dataclass(frozen=True)
class Route:
    resource: Resource
    max_steps: int | None = None  # the head server's simple_agent max_steps, when it sets one
    notes: tuple[str, ...] = ()  # reported once, when a row first uses this route


def _conf_resource(name: str) -> Resource:
    """One of our ``conf/resource/<name>.yaml`` options, built as ``resource=<name>`` would."""
    from gym_rollouts.config.compose import conf_dir

    path = Path(conf_dir()) / "resource" / f"{name}.yaml"
    if not path.is_file():
        plugins = discover_plugins()
        if name in plugins:  # an installed package's resource (resource/plugins.py)
            data = option_node(plugins[name])
            return resource_from_class(str(data["cls"]), data["params"], name)
        options = sorted({p.stem for p in path.parent.glob("*.yaml") if p.stem != "nemo_gym"} | set(plugins))
        raise ConfigError(f"environments: {name!r} is neither an http(s) URL nor one of our resources "
                          f"({', '.join(options)}) nor a 'package.module:Class'")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return resource_from_class(str(data["cls"]), data.get("params") or {}, name)


def is_remote_resource(cfg: Any) -> bool:
    """Whether a ``ResourceConfig`` is ``resource=nemo_gym`` (remote environments)."""
    module, _, attr = str(cfg.cls).partition(":")
    return attr == NemoGymEnvironment.__name__ and module == NemoGymEnvironment.__module__


def tool_names(params: Mapping[str, Any]) -> list[str]:
    """Names of the function tools a row's ``responses_create_params`` offers the model."""
    out = []
    for tool in params.get("tools") or []:
        if isinstance(tool, Mapping):
            source = tool["function"] if isinstance(tool.get("function"), Mapping) else tool
            if isinstance(source.get("name"), str):
                out.append(source["name"])
    return out


class EnvironmentTable:
    """The run's agent -> environment routes (see module doc)."""

    def __init__(self, cfg: CollectConfig) -> None:
        self.cfg = cfg
        self.notices: list[str] = []
        self.head_url: str | None = None
        self.head: HeadDirectory | None = None
        self._routes: dict[str, Route] = {}
        self._remote: dict[tuple[str, ...], NemoGymEnvironment] = {}
        self._resources: list[Resource] = []
        self._default: Resource | None = None
        self._adoptive = False  # the default environment takes one unnamed foreign agent
        self.adopted: str | None = None
        self._discovered: set[int] = set()  # id() of environments found through the head server
        self._broken: dict[int, str] = {}  # id() of a discovered environment -> why it cannot be used
        self._noted: set[str] = set()  # agents whose notes were reported
        # the demo default resource does not score the user's own rows (see conf/resource/demo.yaml)
        self._demo_refuses = cfg.resource.bundled_only and cfg.input_jsonl_fpath is not None
        self._build_static(cfg)

    # -- construction ------------------------------------------------------------------------------
    def _remote_env(self, url: Any, where: str, options: Mapping[str, Any], name: str | None = None
                    ) -> NemoGymEnvironment:
        urls = normalize_urls(url, where)
        env = self._remote.get(urls)
        if env is None:
            env = NemoGymEnvironment(url=list(urls), name=name, **options)
            self._remote[urls] = env
            self._resources.append(env)
        return env

    def _remote_defaults(self) -> dict[str, Any]:
        params = dict(self.cfg.resource.params) if self._default_is_nemo_gym() else {}
        return {"max_in_flight": params.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT),
                "timeout_s": params.get("timeout_s", DEFAULT_TIMEOUT_S)}

    def _default_is_nemo_gym(self) -> bool:
        return is_remote_resource(self.cfg.resource)

    def _build_static(self, cfg: CollectConfig) -> None:
        defaults = self._remote_defaults()
        if self._default_is_nemo_gym():
            params = dict(cfg.resource.params)
            unknown = sorted(set(params) - _REMOTE_KEYS - {"head_url"})
            if unknown:
                raise ConfigError(f"resource.params: unknown key(s) for resource=nemo_gym: {', '.join(unknown)} "
                                  f"(known: head_url, {', '.join(sorted(_REMOTE_KEYS))})")
            if params.get("url") is not None:
                self._default = self._remote_env(params["url"], "resource.params.url", defaults)
                self._adoptive = cfg.agent_name is None
            if params.get("head_url") is not None:
                self.head_url = head_url_from(params["head_url"])
            elif params.get("url") is None:
                self.head_url = head_url_from(cfg.head_server) if cfg.head_server else DEFAULT_HEAD_URL
                self.notices.append(f"resource=nemo_gym without url or head_url: environments are discovered "
                                    f"from the NeMo Gym head server at {self.head_url}")
        else:
            self._default = load_resource(cfg.resource)
            self._resources.append(self._default)
        for agent, spec in cfg.environments.items():
            self._routes[str(agent)] = Route(self._mapped(str(agent), spec, defaults))

    def _mapped(self, agent: str, spec: Any, defaults: Mapping[str, Any]) -> Resource:
        where = f"environments.{agent}"
        if isinstance(spec, Mapping):
            if "url" not in spec or set(spec) - _REMOTE_KEYS:
                raise ConfigError(f"{where} must be a URL, a list of URLs, a resource name, or a mapping with "
                                  f"'url' and optionally max_in_flight / timeout_s; got keys {sorted(spec)}")
            return self._remote_env(spec["url"], where, {**defaults, **{k: spec[k] for k in spec if k != "url"}},
                                    name=agent)
        if isinstance(spec, (list, tuple)) or (isinstance(spec, str) and "://" in spec):
            return self._remote_env(spec, where, defaults, name=agent)
        if isinstance(spec, str) and spec:
            resource = resource_from_class(spec, {}, agent) if ":" in spec else _conf_resource(spec)
            self._resources.append(resource)
            return resource
        raise ConfigError(f"{where}: expected a URL, a list of URLs or a resource name, got {spec!r}")

    @property
    def default_resource(self) -> Resource | None:
        """The configured ``resource`` (None: ``resource=nemo_gym`` with head-server routing only)."""
        return self._default

    @property
    def default_agent(self) -> str | None:
        """The agent name rows without ``agent_ref`` get (None: head-server routing only, and no
        ``agent_name`` given)."""
        if self.cfg.agent_name:
            return self.cfg.agent_name
        if self._default is None:
            return None
        return f"{self.cfg.resource.name}_agent"

    # -- lifecycle -----------------------------------------------------------------------------------
    async def open(self, ctx: ResourceContext) -> None:
        """Discover the head server (if any) and start every environment: reachability and served
        tools are checked here, before any model request."""
        if self.head_url is not None:
            self.head = await discover(ctx.transport, self.head_url)
            self._add_head_routes(self.head)
        for resource in self._resources:
            try:
                await resource.start(ctx)
            except StartupError as exc:
                if id(resource) not in self._discovered:
                    raise  # configured explicitly: it must be there
                self._broken[id(resource)] = str(exc)  # listed by the head server: only its rows are refused

    def _add_head_routes(self, head: HeadDirectory) -> None:
        defaults = self._remote_defaults()
        for name, agent in sorted(head.agents.items()):
            if name in self._routes:
                continue  # an explicit mapping wins
            url = head.environment_of(name)
            if agent.impl != SIMPLE_AGENT or url is None:
                continue  # refused by name when a row uses it (see _unroutable)
            known = len(self._resources)
            env = self._remote_env(url, f"head server agent {name}", defaults, name=agent.resources_server)
            if len(self._resources) > known:
                self._discovered.add(id(env))
            notes = []
            if agent.max_steps is None:
                notes.append(f"NeMo Gym agent {name} sets no max_steps (unbounded in NeMo Gym): "
                             f"agent.max_steps={self.cfg.agent.max_steps} applies")
            if agent.other_keys:
                notes.append(f"NeMo Gym agent {name}: config key(s) {', '.join(agent.other_keys)} are not "
                             f"applied by our tool loop")
            self._routes[name] = Route(env, agent.max_steps, tuple(notes))

    async def close(self) -> None:
        for resource in reversed(self._resources):
            try:
                await resource.stop()
            except Exception:  # closing must not hide the run's own outcome
                log.exception("stopping %s failed", resource.describe())

    # -- per row -------------------------------------------------------------------------------------
    def route(self, agent: str | None) -> Route | None:
        if agent is None:
            return None
        found = self._routes.get(agent)
        if found is not None:
            return found
        if self._default is not None and agent == self.default_agent and not self._demo_refuses:
            return self._routes.setdefault(agent, Route(self._default))
        if self._adoptive and self.adopted is None and self._default is not None:
            self.adopted = agent
            return self._routes.setdefault(agent, Route(self._default))
        return None

    def resource_of(self, row: Mapping[str, Any]) -> Route:
        """The route of a row that passed ``row_problem`` (its agent is mapped)."""
        route = self.route(agent_of(row))
        if route is None:  # pragma: no cover - rows are checked before they run
            raise ConfigError(f"agent {agent_of(row)!r} maps to no environment")
        return route

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why a materialized row cannot run (None when it can; see module doc)."""
        agent = agent_of(row)
        route = self.route(agent)
        if route is None:
            return self._unroutable(agent)
        broken = self._broken.get(id(route.resource))
        if broken is not None:
            return f"agent {agent!r}: {broken}"
        if agent not in self._noted:
            self._noted.add(agent)  # type: ignore[arg-type]
            self.notices.extend(route.notes)
            if route.resource.served_tools() is None:
                self.notices.append(f"{route.resource.describe()} does not say which tools it serves (no "
                                    f"/openapi.json): the tools of agent {agent}'s rows are not checked against it")
        offered = tool_names(row.get("responses_create_params") or {})
        served = route.resource.served_tools()
        if offered and served is not None:
            missing = [t for t in offered if t not in served]
            if missing:
                return (f"offers the model tool(s) {', '.join(missing)} that {route.resource.describe()} does not "
                        f"serve (it serves: {', '.join(sorted(served)) or 'no tools'}); is this row meant for "
                        f"another environment?")
        return route.resource.row_problem(row)

    def _unroutable(self, agent: str | None) -> str:
        if agent is None:
            known = ", ".join(sorted(self._routes)) or "none"
            return f"the row has no agent_ref and no agent_name was given: pass +agent_name=<agent> (known: {known})"
        if self.head is not None and agent in self.head.agents:
            info = self.head.agents[agent]
            if info.impl != SIMPLE_AGENT:
                return (f"agent {agent!r} is NeMo Gym's {info.impl!r} agent; gym_rollouts runs NeMo Gym's simple "
                        f"tool loop (simple_agent) only: run this agent with NeMo Gym, or map its rows to an "
                        f"environment with environments.{agent}=<url>")
            return (f"agent {agent!r} names resources server {info.resources_server!r}, which the head server at "
                    f"{self.head.url} does not list")
        if self._demo_refuses and agent == self.default_agent:
            return ("no environment is chosen for this input: the default resource is the arithmetic demo, which "
                    "runs only its bundled example. Choose the environment your rows are for: resource=nemo_gym "
                    "resource.params.head_url=http://host:11000 (environments started with ng_run) or "
                    "resource.params.url=http://host:port, environments.<agent>=..., or one of ours: "
                    "resource=arithmetic|exact_match|weather (README: Bring your NeMo Gym environments)")
        hint = self._mapping_hint(agent)
        if self.adopted is not None:
            return (f"agent {agent!r} is a second agent in this input (rows of {self.adopted!r} go to "
                    f"{self._default.describe() if self._default else '?'}): {hint}")
        return f"agent {agent!r} maps to no environment: {hint}"

    def _mapping_hint(self, agent: str) -> str:
        known = ", ".join(sorted(set(self._routes) | ({self.default_agent} if self.default_agent else set())))
        where = f" (known agents: {known})" if known else ""
        return (f"map it with environments.{agent}=http://host:port (a NeMo Gym resources server) or "
                f"=<one of our resources>, or point collect at your NeMo Gym head server with resource=nemo_gym "
                f"resource.params.head_url=http://host:11000{where}")

    # -- reporting -----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What decides the environments of a run, without URLs (ports may change between runs), plus
        the versions of the libraries that generate or score the tasks of its in-process resources
        (only when one has any, so earlier manifests without them still match)."""
        found = {"environments": {k: ("remote" if isinstance(v, (list, tuple)) or (isinstance(v, str) and "://" in v)
                                      or isinstance(v, Mapping) else v) for k, v in self.cfg.environments.items()},
                 "head_server": self.head_url is not None}
        versions = {name: version for r in self._resources for name, version in r.library_versions().items()}
        if versions:
            found["library_versions"] = dict(sorted(versions.items()))
        return found

    def resources(self) -> list[Resource]:
        return list(self._resources)

    def broken_reason(self, resource: Resource) -> str | None:
        """Why an environment the head server listed cannot be used (None: it can)."""
        return self._broken.get(id(resource))

    def agents_by_resource(self) -> dict[str, Resource]:
        """Every agent name with a route so far (rows have been checked: those are the run's agents)."""
        return {agent: route.resource for agent, route in self._routes.items()}

    def stats(self) -> list[dict[str, Any]]:
        return [r.stats() for r in self._resources if r.stats()]


def agent_of(row: Mapping[str, Any]) -> str | None:
    """The ``agent_ref.name`` of a row (None when it has none)."""
    ref = row.get(AGENT_REF)
    return ref.get("name") if isinstance(ref, MAPPING) and isinstance(ref.get("name"), str) else None
