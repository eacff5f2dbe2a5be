"""Fixtures for the router's wire tests: embedded vLLM-compatible servers as child processes."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess

StartFleet = Callable[..., list[EmbeddedProcess]]


@pytest.fixture
def start_fleet() -> Iterator[StartFleet]:
    """``start_fleet(EmbeddedConfig(...), EmbeddedConfig(...), ...)`` -> running child processes,
    each on its own loopback port, all reaped at the end of the test."""
    with contextlib.ExitStack() as stack:
        def start(*cfgs: EmbeddedConfig) -> list[EmbeddedProcess]:
            return [stack.enter_context(embedded_subprocess(cfg, startup_timeout=60.0)) for cfg in cfgs]

        yield start
