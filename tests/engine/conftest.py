"""Fixtures for engine tests: a slow embedded server owned by the tests (so a killed ``collect``
leaves no orphan behind) and ``collect`` as a real subprocess (see engine_helpers.py)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from engine_helpers import collect_argv, collect_env
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess


@pytest.fixture(scope="module")
def slow_server() -> Iterator[EmbeddedProcess]:
    """40 ms per model call: a run lasts long enough for kills and signals to land mid-run."""
    with embedded_subprocess(EmbeddedConfig(latency_ms=40.0, keepalive_timeout=60.0), startup_timeout=60.0) as proc:
        yield proc


@pytest.fixture
def collect(slow_server: EmbeddedProcess, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    def run(*extra: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run(collect_argv(slow_server, tmp_path, *extra), cwd=tmp_path, env=collect_env(),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return run


@pytest.fixture
def start_collect(slow_server: EmbeddedProcess, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(*extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(collect_argv(slow_server, tmp_path, *extra), cwd=tmp_path, env=collect_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
