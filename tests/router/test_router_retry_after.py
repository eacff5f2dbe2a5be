"""Retry-After on 429 / 503 over real sockets: waited for when no other server accepts (within the
call's deadline and ``retry_after_max_s``), the asking server kept out meanwhile when another does."""

from __future__ import annotations

import dataclasses
import time

import aiohttp
import pytest
from router_harness import FAST_TRANSPORT, body, by_server, drive, open_dispatcher

from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.errors import ServerStatusError


async def chat_requests(session: aiohttp.ClientSession, root_url: str) -> int:
    async with session.get(root_url + "/_admin/stats") as resp:
        return int((await resp.json())["requests"].get("chat", 0))


async def test_the_only_server_is_waited_for_as_long_as_it_asks_within_the_deadline(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("429",), fault_retry_after="1"))
    transport = dataclasses.replace(FAST_TRANSPORT, call_timeout_s=2.5)  # backoff alone: 0.05 .. 0.5 s
    async with aiohttp.ClientSession() as admin, open_dispatcher([proc.base_url], transport=transport) as dispatcher:
        started = time.monotonic()
        with pytest.raises(ServerStatusError) as info:
            await dispatcher.post("/chat/completions", body(0, 0), "r0")
        elapsed = time.monotonic() - started
        assert info.value.status == 429 and info.value.retry_after == "1"
        # attempts at 0, 1 and 2 s; a fourth would start at 3 s, past the 2.5 s deadline: given up at 2 s
        assert await chat_requests(admin, proc.root_url) == 3
        assert 2.0 <= elapsed < 2.5, elapsed


async def test_a_retry_after_beyond_the_cap_ends_the_call_at_once(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("503",), fault_retry_after="30"))
    transport = dataclasses.replace(FAST_TRANSPORT, retry_after_max_s=5.0)
    async with aiohttp.ClientSession() as admin, open_dispatcher([proc.base_url], transport=transport) as dispatcher:
        started = time.monotonic()
        with pytest.raises(ServerStatusError) as info:
            await dispatcher.post("/chat/completions", body(0, 0), "r0")
        assert info.value.status == 503 and time.monotonic() - started < 0.5
        assert await chat_requests(admin, proc.root_url) == 1


async def test_the_asking_server_is_kept_out_while_another_takes_the_calls(start_fleet) -> None:
    busy, well = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("503",), fault_retry_after="30"),
                             EmbeddedConfig(latency_ms=100.0))
    async with aiohttp.ClientSession() as admin, open_dispatcher([busy.base_url, well.base_url]) as dispatcher:
        calls = await drive(dispatcher, range(12), turns=1, workers=1)  # 1.2 s: six health probe rounds
        assert {c.server for c in calls} == {well.base_url}
        assert max(c.seconds for c in calls) < 1.0  # the first call went elsewhere without waiting 30 s
        assert await chat_requests(admin, busy.root_url) == 1  # its /health passes, yet it got nothing more
        assert by_server(dispatcher)[busy.base_url]["state"] == "down"
