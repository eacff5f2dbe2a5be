"""Optional task libraries of in-process resources (the ``tasks`` extra: reasoning-gym, math-verify).

``require`` imports one, or stops with a ``ConfigError`` naming the extra to install (exit 2 before
any request); ``installed_version`` reads a distribution's version for the run manifest (resume
refuses a run whose generator or scorer library changed).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

from gym_rollouts.errors import ConfigError

TASKS_EXTRA = "tasks"


def require(module: str, distribution: str, resource: str, extra: str = TASKS_EXTRA) -> ModuleType:
    """``import module``, or a ``ConfigError`` saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"resource={resource} needs the {distribution} library, which is not installed here "
                          f"({exc}). Install the optional extra: pip install 'gym_rollouts[{extra}]' (from a "
                          f"checkout: pip install -e '.[{extra}]')") from None


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` ("unknown" when it has no metadata)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
