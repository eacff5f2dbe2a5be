"""Fixtures for the embedded-server tests: servers on 127.0.0.1 and a small wire helper."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
TOOLS = [WEATHER_TOOL, CALC_TOOL]


class Wire:
    """Thin aiohttp helper bound to one server: JSON in, (status, JSON-or-text) out."""

    def __init__(self, session: aiohttp.ClientSession, root_url: str, server: Any = None) -> None:
        self.session = session
        self.root = root_url
        self.base = root_url + "/v1"
        self.server = server

    async def post(self, path: str, body: Any = None, *, data: bytes | None = None,
                   timeout: float | None = None) -> tuple[int, Any]:
        url = path if path.startswith("http") else self.root + path
        kw: dict[str, Any] = {"data": data} if data is not None else {"json": body}
        if timeout is not None:
            kw["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self.session.post(url, **kw) as resp:
            text = await resp.text()
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, text

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.root + path) as resp:
            return resp.status, await resp.text(), resp.headers.get("Content-Type", "")

    async def chat(self, **body: Any) -> dict:
        status, reply = await self.post("/v1/chat/completions", body)
        assert status == 200, reply
        return reply

    async def completion(self, **body: Any) -> dict:
        status, reply = await self.post("/v1/completions", body)
        assert status == 200, reply
        return reply


@pytest.fixture
def tools() -> list[dict]:
    return [dict(t) for t in TOOLS]


@pytest.fixture
async def make_wire():
    """Factory: `await make_wire(reasoning=True)` starts an in-process server with that config."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def factory(**cfg: Any) -> Wire:
            srv = await stack.enter_async_context(EmbeddedServer(EmbeddedConfig(**cfg)))
            return Wire(session, srv.root_url, srv)

        yield factory


@pytest.fixture
async def wire_to():
    """Factory: `wire_to(proc.base_url)` -> a Wire for a server started elsewhere (a child)."""
    async with aiohttp.ClientSession() as session:
        yield lambda base_url: Wire(session, base_url.removesuffix("/v1"))


@pytest.fixture
async def wire(make_wire) -> Wire:
    return await make_wire()
