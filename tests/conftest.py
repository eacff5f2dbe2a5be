"""Shared fixtures: one embedded vLLM-compatible server subprocess for the whole test session,
and a runner for our console scripts as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess

CliRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[EmbeddedProcess]:
    """A default embedded server (model ``gym-tiny``) on a free loopback port. Shared: never kill
    or reconfigure it in a test; start your own for fault tests."""
    with embedded_subprocess(EmbeddedConfig(), startup_timeout=60.0) as proc:
        yield proc


def _script(name: str) -> list[str]:
    """The installed console script next to this interpreter, else its module (same ``main``)."""
    path = Path(sys.executable).with_name(name)
    if path.is_file():
        return [str(path)]
    return [sys.executable, "-m", f"gym_rollouts.cli.{name}"]


@pytest.fixture
def run_cli(tmp_path: Path) -> CliRunner:
    """``run_cli("collect", "limit=2", cwd=...)``: the script as a subprocess (cwd: a fresh temp
    dir by default), text output captured, never raising on a non-zero exit."""

    def run(name: str, *args: str, cwd: Path | None = None, timeout: float = 180.0) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("HYDRA_FULL_ERROR", None)
        return subprocess.run([*_script(name), *args], cwd=cwd or tmp_path, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    return run
