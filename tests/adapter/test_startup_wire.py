"""Start-up checks against real sockets: /v1 correction, model id with closest match,
max_model_len across the fleet, unreachable servers."""

from __future__ import annotations

import socket

import pytest

from gym_rollouts.adapter.startup import discover_fleet
from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer
from gym_rollouts.errors import StartupError
from gym_rollouts.transport.client import HttpTransport


async def fleet(urls, model):
    async with HttpTransport(TransportConfig(connect_timeout_s=2.0), concurrency=2) as http:
        return await discover_fleet(http, tuple(urls), model)


async def test_base_url_without_v1_is_corrected(caplog):
    async with EmbeddedServer(EmbeddedConfig(max_model_len=1234)) as server:
        root = server.base_url.removesuffix("/v1")
        info = await fleet([root], "gym-tiny")
    assert info.base_urls == (root + "/v1",)
    assert info.max_model_len == 1234 and info.model_name == "gym-tiny"
    assert "lacks /v1" in caplog.text


async def test_single_served_model_is_used_when_none_is_configured():
    async with EmbeddedServer(EmbeddedConfig(model_name="org/model-7b")) as server:
        info = await fleet([server.base_url], None)
    assert info.model_name == "org/model-7b"


async def test_unknown_model_lists_served_ids_and_closest_match():
    async with EmbeddedServer(EmbeddedConfig(model_name="Qwen/Qwen3-4B")) as server:
        with pytest.raises(StartupError) as info:
            await fleet([server.base_url], "Qwen3-4B")
    message = str(info.value)
    assert "\n" not in message
    assert "served ids: Qwen/Qwen3-4B." in message and "Closest match: Qwen/Qwen3-4B." in message


async def test_smallest_max_model_len_of_the_fleet():
    async with EmbeddedServer(EmbeddedConfig(max_model_len=4096)) as a, \
            EmbeddedServer(EmbeddedConfig(max_model_len=2048)) as b:
        info = await fleet([a.base_url, b.base_url], "gym-tiny")
    assert info.max_model_len == 2048 and len(info.base_urls) == 2


async def test_model_missing_on_one_server_names_that_server():
    async with EmbeddedServer(EmbeddedConfig()) as a, EmbeddedServer(EmbeddedConfig(model_name="other")) as b:
        with pytest.raises(StartupError) as info:
            await fleet([a.base_url, b.base_url], "gym-tiny")
    assert f"not served by {b.base_url}" in str(info.value)


async def test_unreachable_server_says_how_to_check():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StartupError) as info:
        await fleet([f"http://127.0.0.1:{port}/v1"], "m")
    assert f"curl http://127.0.0.1:{port}/health" in str(info.value)


async def test_wrong_path_is_refused_with_the_fix():
    async with EmbeddedServer(EmbeddedConfig()) as server:
        root = server.base_url.removesuffix("/v1")
        with pytest.raises(StartupError) as info:
            await fleet([root + "/api"], "gym-tiny")
    assert "must end with /v1" in str(info.value)
