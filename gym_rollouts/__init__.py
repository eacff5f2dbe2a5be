"""gym_rollouts: fast, sturdy RL rollout collection against vLLM servers.

Data flows one way: config -> engine -> agent -> adapter -> router -> transport;
results flow back to the sink. See README.md and docs/ for the user-facing story.

The Python API (gym_rollouts/api/, docs/library.md) is importable from here:
``from gym_rollouts import Collector, load_config, collect``. It is imported on first use (PEP 562
``__getattr__``), so ``import gym_rollouts`` alone stays light for the console scripts.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Collected", "Collector", "RunResult", "__version__", "collect", "load_config"]
_API = frozenset({"Collected", "Collector", "RunResult", "collect", "load_config"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from gym_rollouts import api

        return getattr(api, name)
    raise AttributeError(f"module 'gym_rollouts' has no attribute {name!r}")
