"""The Python library API: collection inside a training loop (docs/library.md).

``load_config([...overrides])`` composes the typed config exactly as ``collect`` does;
``async with Collector(cfg) as c: async for row in c.run(rows): ...`` streams finished rollouts
as Python dicts, run after run on the same connections, router and environments;
``collect(cfg, rows)`` is the blocking form. The ``collect`` command is a user of this package
(``run_config``); both sit on the one engine, engine/collection.py.
"""

from gym_rollouts.api.collector import BACKLOG_MAX, Collected, Collector, collect, run_config
from gym_rollouts.api.config import load_config
from gym_rollouts.engine.session import RunResult
from gym_rollouts.errors import (ConfigError, FleetDeadError, GymRolloutsError, InputChangedError, InputError,
                                 OutputWriteError, RunStopped)

__all__ = [
    "BACKLOG_MAX", "Collected", "Collector", "ConfigError", "FleetDeadError", "GymRolloutsError",
    "InputChangedError", "InputError", "OutputWriteError", "RunResult", "RunStopped", "collect", "load_config",
    "run_config",
]
