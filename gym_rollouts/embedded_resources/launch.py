"""Run the embedded resources server (or its head-server mode) as a child process.

`resources_subprocess(...)` (sync) and `launch_resources(...)` (async) start
`python -m gym_rollouts.embedded_resources ...` through the generic handle of
`gym_rollouts.embedded.launch` and yield it: `.url`, `.port`, `.pid`, `.alive`, `.returncode`,
`.kill()` (SIGKILL), `.terminate()` (SIGTERM), `.restart()` (same port), `.stderr_tail()`.
Pass a `ResourcesConfig`, a `HeadConfig`, a list of CLI arguments, or nothing.
"""

from __future__ import annotations

import contextlib
import sys
from typing import AsyncIterator, Iterator, Sequence, Union

from gym_rollouts.embedded.launch import AsyncServerProcess, ServerProcess, running, running_async

from .config import HeadConfig, ResourcesConfig, config_to_argv

MODULE = "gym_rollouts.embedded_resources"
ConfigLike = Union[ResourcesConfig, HeadConfig, Sequence[str], None]


def _argv(cfg: ConfigLike) -> list[str]:
    if cfg is None:
        return []
    if isinstance(cfg, (ResourcesConfig, HeadConfig)):
        return config_to_argv(cfg)
    if isinstance(cfg, str):
        raise TypeError("pass CLI arguments as a list of strings, not one string")
    return [str(a) for a in cfg]


def resources_process(cfg: ConfigLike = None, *, python: str = sys.executable,
                      startup_timeout: float = 30.0) -> ServerProcess:
    """A not-yet-started handle (`.start()` / `.close()` are yours to call)."""
    return ServerProcess(_argv(cfg), module=MODULE, label="embedded resources server", python=python,
                         startup_timeout=startup_timeout)


@contextlib.contextmanager
def resources_subprocess(cfg: ConfigLike = None, *, python: str = sys.executable,
                         startup_timeout: float = 30.0) -> Iterator[ServerProcess]:
    """`with resources_subprocess(["--name", "env"]) as proc:` -> a running child."""
    with running(resources_process(cfg, python=python, startup_timeout=startup_timeout)) as proc:
        yield proc


@contextlib.asynccontextmanager
async def launch_resources(cfg: ConfigLike = None, *, python: str = sys.executable,
                           startup_timeout: float = 30.0) -> AsyncIterator[AsyncServerProcess]:
    """`async with launch_resources(cfg) as proc:` -> a running child; lifecycle calls are coroutines."""
    async with running_async(resources_process(cfg, python=python, startup_timeout=startup_timeout)) as proc:
        yield proc
