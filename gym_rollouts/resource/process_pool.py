"""Worker processes for CPU-bound verifiers (math-verify's SymPy comparisons can take seconds).

``VerifierPool.start`` opens a ``ProcessPoolExecutor`` of ``processes`` workers (``spawn``: no
fork of a process that runs threads and an event loop), ``run(fn, *args)`` awaits ``fn(*args)`` in
one of them, so a slow check never stalls the event loop (the other rollouts go on) and runs in the
worker's main thread (where ``signal.alarm`` timeouts work); ``stop`` shuts the pool down. Before
``start`` (a resource used directly, e.g. in a unit test) ``run`` calls ``fn`` inline.
``fn`` and its arguments must be picklable (module-level functions, plain data).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, TypeVar

from gym_rollouts.errors import ConfigError

T = TypeVar("T")


def default_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class VerifierPool:
    def __init__(self, processes: int | None, where: str) -> None:
        if processes is None:
            processes = default_processes()
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ConfigError(f"{where} must be an integer >= 1 (worker processes) or null "
                              f"(min(4, cpu count) = {default_processes()}), got {processes!r}")
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:  # a running check ends within its own timeouts
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
