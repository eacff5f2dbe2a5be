"""The resource interface and the loader that builds one from config.

A resource owns a task's environment: ``seed`` makes per-rollout state from the task row,
``call_tool`` executes one tool call against that state, ``verify`` turns the finished rollout
into a reward (plus optional extra fields merged into the output row), ``close`` ends the
rollout's state whatever happened (success, failure, cancellation).

Before any model request the engine asks each resource what it can check up front:
``served_tools`` (the tool names it executes; None when it cannot say) and ``row_problem`` (why a
row cannot be scored here, e.g. a missing ``expected_answer``). Remote resources open their
connections in ``start`` (given the run's environment transport) and close them in ``stop``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from gym_rollouts.config.schema import ResourceConfig
from gym_rollouts.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from gym_rollouts.config.schema import RouterConfig, TransportConfig
    from gym_rollouts.transport.client import HttpTransport


@dataclass(frozen=True)
class ResourceContext:
    """What a remote resource needs to reach its servers: the run's environment transport (no
    policy API key on it) and the router / transport settings its requests follow."""

    transport: "HttpTransport"
    router: "RouterConfig"
    transport_cfg: "TransportConfig"


@dataclass
class Verification:
    reward: float
    extras: dict[str, Any] = field(default_factory=dict)


class Resource:
    """Base class; subclasses override what they need. Must be safe to share across workers
    (per-rollout state lives in the object ``seed`` returns)."""

    name = "resource"

    def __init__(self, **params: Any) -> None:
        if params:
            raise ConfigError(f"resource '{self.name}' takes no params, got {sorted(params)}")

    def tools(self) -> list[dict[str, Any]]:
        """Responses-API function tools offered when a task row does not list its own."""
        return []

    def served_tools(self) -> frozenset[str] | None:
        """Names of the tools ``call_tool`` executes (None: cannot say, nothing is checked). A row
        offering the model any other tool is refused before any request."""
        return frozenset(t["name"] for t in self.tools())

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why ``row`` cannot be scored by this resource (None when it can); checked for every row
        before any request, so rows meant for another environment never run here silently."""
        return None

    def generated_rows(self) -> Iterable[Mapping[str, Any]] | None:
        """Task rows this resource makes from its own config, used when the run names no input file
        (engine/generated_inputs.py writes them beside the output); None: it needs an input file.
        The same config must give the same rows, byte for byte (resume compares the input)."""
        return None

    def library_versions(self) -> Mapping[str, str]:
        """Versions of the libraries that make or score this resource's tasks (distribution ->
        version): recorded in the run manifest, so resume refuses when one changed."""
        return {}

    async def start(self, ctx: ResourceContext) -> None:
        """Open connections (remote resources); in-process resources need nothing."""

    async def stop(self) -> None:
        """Close what ``start`` opened."""

    async def seed(self, row: Mapping[str, Any]) -> Any:
        return None

    async def call_tool(self, state: Any, name: str, arguments: Mapping[str, Any]) -> str:
        raise ToolCallError(f"unknown tool '{name}'")

    def bad_arguments(self, name: str, problem: str) -> str:
        """The tool output the model sees when its arguments for ``name`` are not a JSON object."""
        return f"Error: the arguments of {name} {problem}. Send a JSON object."

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        raise NotImplementedError

    async def close(self, state: Any) -> None:
        """The rollout is over (finished, failed or cancelled): drop its state."""

    def describe(self) -> str:
        """How this resource is named in messages (remote ones add where they are)."""
        return f"resource '{self.name}'"

    def stats(self) -> dict[str, Any]:
        """Figures for the aggregate metrics file (remote resources: per-server counts)."""
        return {}


class ToolCallError(Exception):
    """A tool call the model got wrong: reported back to the model as the tool output."""


def final_text(response: Mapping[str, Any]) -> str:
    """The text of the last assistant message of a response ("" when there is none)."""
    for item in reversed(response.get("output") or []):
        if item.get("type") == "message":
            return "".join(c.get("text", "") for c in item.get("content") or [])
    return ""


def called_tools(response: Mapping[str, Any]) -> list[str]:
    return [i["name"] for i in response.get("output") or [] if i.get("type") == "function_call"]


def load_resource(cfg: ResourceConfig) -> Resource:
    return resource_from_class(cfg.cls, cfg.params, cfg.name)


def resource_from_class(cls_path: str, params: Mapping[str, Any], name: str) -> Resource:
    """An instance of the ``package.module:Class`` Resource subclass ``cls_path`` with ``params``,
    or what the ``package.module:factory`` callable returns for them (it must be a Resource)."""
    module_name, _, attr = cls_path.partition(":")
    if not attr:
        raise ConfigError(f"resource.cls must look like 'package.module:ClassName', got {cls_path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"resource.cls: cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, attr, None)
    is_class = isinstance(cls, type)
    if cls is None or (is_class and not issubclass(cls, Resource)) or not callable(cls):
        raise ConfigError(f"resource.cls: {cls_path!r} is not a Resource subclass nor a factory returning one")
    try:
        made = cls(**dict(params))
    except TypeError as exc:
        if not is_class:
            raise ConfigError(f"resource.cls: {cls_path!r} is not a Resource subclass, and calling it as a factory "
                              f"with params {dict(params)} failed: {exc}") from None
        raise ConfigError(f"resource '{name}': bad params {dict(params)}: {exc}") from None
    if not isinstance(made, Resource):
        raise ConfigError(f"resource.cls: {cls_path!r} is not a Resource subclass, and as a factory it returned "
                          f"{type(made).__name__}, not a Resource")
    return made
