"""Fixtures for doctor's tests: embedded servers started in a chosen broken way, and a port
that accepts connections but never answers."""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Iterator

import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer


@pytest.fixture
async def start_server() -> Any:
    """``await start_server(tool_parser=False)`` -> an in-process embedded server (closed after)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**cfg: Any) -> EmbeddedServer:
            return await stack.enter_async_context(EmbeddedServer(EmbeddedConfig(**cfg)))

        yield start


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers: a hung server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]
