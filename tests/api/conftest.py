"""Fixtures for the Python API tests: a slow embedded server (model calls take long enough for a
pause or a slow consumer to land mid-run) and the config builder (api_helpers.py has the rest)."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from gym_rollouts.api import load_config
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess


@pytest.fixture(scope="module")
def slow_server() -> Iterator[EmbeddedProcess]:
    """40 ms per model call. Owned by this module's tests: never reconfigure it."""
    with embedded_subprocess(EmbeddedConfig(latency_ms=40.0, keepalive_timeout=60.0), startup_timeout=60.0) as proc:
        yield proc


@pytest.fixture
def config_for() -> Callable[..., CollectConfig]:
    """``config_for(server, "num_samples_in_parallel=4", ...)``: a config routed to ``server``."""
    def make(server: EmbeddedProcess, *extra: str) -> CollectConfig:
        return load_config([f"policy_base_url={server.base_url}", "resource=exact_match", "progress=off", *extra])
    return make
