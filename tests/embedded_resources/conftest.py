"""Fixtures for the embedded resources server tests: one child server per test module, and a
small aiohttp helper that carries the session cookie explicitly (as a per-rollout client does)."""

from __future__ import annotations

from typing import Any, Iterator

import aiohttp
import pytest

from gym_rollouts.embedded_resources import ResourcesControl, resources_subprocess
from resources_helpers import NAME, Client


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """One resources server child for the whole module (name `wire_env`)."""
    with resources_subprocess(["--name", NAME, "--slow-ms", "300"]) as proc:
        yield proc


@pytest.fixture
def control(server) -> Iterator[ResourcesControl]:
    ctl = ResourcesControl(server.url)
    ctl.clear_faults()
    yield ctl
    ctl.clear_faults()


@pytest.fixture
async def http():
    # a dummy jar: cookies travel only as each Client sends them
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@pytest.fixture
def client(http, server):
    """Factory: `client()` -> a fresh session's Client; `client(cookie=...)` reuses one."""
    return lambda cookie=None, url=None: Client(http, url or server.url, cookie)
