"""The resource interface and the loader that builds one from config.

A resource owns a task's environment: ``seed`` makes per-rollout state from the task row,
``call_tool`` executes one tool call against that state, ``verify`` turns the finished rollout
into a reward (plus optional extra numeric fields merged into the output row).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from gym_rollouts.config.schema import ResourceConfig
from gym_rollouts.errors import ConfigError


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

    async def seed(self, row: Mapping[str, Any]) -> Any:
        return None

    async def call_tool(self, state: Any, name: str, arguments: Mapping[str, Any]) -> str:
        raise ToolCallError(f"unknown tool '{name}'")

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        raise NotImplementedError


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
    module_name, _, attr = cfg.cls.partition(":")
    if not attr:
        raise ConfigError(f"resource.cls must look like 'package.module:ClassName', got {cfg.cls!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"resource.cls: cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Resource)):
        raise ConfigError(f"resource.cls: {cfg.cls!r} is not a Resource subclass")
    try:
        return cls(**dict(cfg.params))
    except TypeError as exc:
        raise ConfigError(f"resource '{cfg.name}': bad params {dict(cfg.params)}: {exc}") from None
