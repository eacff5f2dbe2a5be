"""Every stall bounded, over real sockets: a hung server (answers /health, makes no progress), a server
failing its probes while calls hang on it, a dripping server, the total deadline of a call; and a
long generation that must *not* be cut off. The read timeout is set far above what each test allows,
so it is never what rescues a call."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time

import aiohttp
import pytest
from router_harness import FAST_TRANSPORT, body, by_server, drive, open_dispatcher

from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.errors import TransportError

PATIENT = dataclasses.replace(FAST_TRANSPORT, read_timeout_s=120.0)  # far beyond every bound tested here
VLLM = {"vllm_servers": True}


async def test_a_hung_server_costs_about_the_stall_time_not_the_read_timeout(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(latency_ms=30.0), EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",)),
                        EmbeddedConfig(latency_ms=30.0))
    hung = procs[1].base_url
    stall = 1.0
    async with open_dispatcher([p.base_url for p in procs], transport=PATIENT, concurrency=12, stall_timeout_s=stall,
                               dispatcher_kw=VLLM) as dispatcher:
        calls = await drive(dispatcher, range(24), turns=2, workers=12)
        assert len(calls) == 48 and not [c for c in calls if c.server == hung]
        slowest = max(c.seconds for c in calls)
        assert slowest < stall + 2.5, f"a call took {slowest:.2f}s with stall_timeout_s={stall}"
        row = by_server(dispatcher)[hung]
        assert row["abandoned"] >= 1 and row["downs"] >= 1 and row["completed"] == 0 and row["in_flight"] == 0
        summary = dispatcher.summary()
        assert summary["retries_by_kind"].get("stalled") == row["abandoned"]  # each one retried elsewhere
        assert summary["progress_polls"] >= 1


async def test_a_long_generation_whose_counters_move_is_never_cut_off(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(latency_ms=2000.0))  # generated tokens grow over the 2 s
    async with open_dispatcher([proc.base_url], transport=PATIENT, stall_timeout_s=0.5,
                               dispatcher_kw=VLLM) as dispatcher:
        started = time.monotonic()
        replies = await asyncio.gather(*(dispatcher.post("/chat/completions", body(i, 0), f"r{i}") for i in range(3)))
        assert all(reply["choices"][0]["message"]["content"] for _, reply in replies)
        assert time.monotonic() - started >= 2.0  # four times the stall time, without an answer meanwhile
        row = dispatcher.stats()[0]
        assert (row["completed"], row["abandoned"], row["failed"], row["state"]) == (3, 0, 0, "up")
        assert dispatcher.summary()["progress_polls"] >= 4  # the detector looked, and saw progress


async def test_calls_on_a_server_failing_its_probes_are_abandoned_and_retried_elsewhere(start_fleet) -> None:
    sick, well = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",)), EmbeddedConfig())
    async with aiohttp.ClientSession() as admin, \
            open_dispatcher([sick.base_url, well.base_url], transport=PATIENT, stall_timeout_s=0.0,
                            dispatcher_kw=VLLM) as dispatcher:
        async with admin.post(sick.root_url + "/_admin/faults", json={"fail_health": True}) as resp:
            assert resp.status == 200
        calls = await drive(dispatcher, range(8), turns=1, workers=8)
        assert len(calls) == 8 and {c.server for c in calls} == {well.base_url}
        assert max(c.seconds for c in calls) < 3.0  # probes every 0.2 s, down after 2 failures
        row = by_server(dispatcher)[sick.base_url]
        assert row["abandoned"] >= 1 and not row["up"] and row["in_flight"] == 0


async def test_a_dripping_server_is_left_after_the_body_timeout(start_fleet) -> None:
    drip, well = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("drip",)), EmbeddedConfig())
    transport = dataclasses.replace(PATIENT, body_timeout_s=0.5)
    async with open_dispatcher([drip.base_url, well.base_url], transport=transport, dispatcher_kw=VLLM) as dispatcher:
        calls = await drive(dispatcher, range(6), turns=2, workers=3)
        assert len(calls) == 12 and {c.server for c in calls} == {well.base_url}
        assert max(c.seconds for c in calls) < 2.5
        row = by_server(dispatcher)[drip.base_url]
        assert row["failed"] >= 1 and row["completed"] == 0
        assert dispatcher.summary()["retries_by_kind"].get("timeout", 0) == row["failed"]


async def test_the_call_deadline_bounds_a_call_in_total(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",)))
    transport = dataclasses.replace(PATIENT, call_timeout_s=1.0)
    async with open_dispatcher([proc.base_url], transport=transport, stall_timeout_s=0.0,
                               dispatcher_kw=VLLM) as dispatcher:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await dispatcher.post("/chat/completions", body(0, 0), "r0")
        elapsed = time.monotonic() - started
        assert info.value.kind == "timeout" and "transport.call_timeout_s=1s" in str(info.value)
        assert 0.9 < elapsed < 2.0, elapsed
        assert dispatcher.stats()[0]["in_flight"] == 0


async def test_a_frozen_process_is_caught_by_its_unreadable_metrics_without_health_probes(start_fleet) -> None:
    frozen, well = start_fleet(EmbeddedConfig(latency_ms=30.0), EmbeddedConfig(latency_ms=30.0))
    os.kill(frozen.pid, signal.SIGSTOP)  # the kernel still accepts connections; nothing answers
    try:
        async with open_dispatcher([frozen.base_url, well.base_url], transport=PATIENT, health_interval_s=0.0,
                                   health_timeout_s=0.3, stall_timeout_s=1.0, dispatcher_kw=VLLM) as dispatcher:
            calls = await drive(dispatcher, range(8), turns=1, workers=8)
            assert len(calls) == 8 and {c.server for c in calls} == {well.base_url}
            assert max(c.seconds for c in calls) < 3.5
            assert by_server(dispatcher)[frozen.base_url]["abandoned"] >= 1
    finally:
        os.kill(frozen.pid, signal.SIGCONT)


async def test_headers_dripped_byte_by_byte_cannot_outlast_the_call_deadline() -> None:
    # each byte resets a per-read timeout; the call's deadline is what bounds it
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for byte in answer:  # one byte every 0.1 s: 8 s for the whole answer
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    transport = dataclasses.replace(PATIENT, call_timeout_s=1.0)
    async with server, open_dispatcher([url], transport=transport, health_interval_s=0.0,
                                       dispatcher_kw=VLLM) as dispatcher:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await dispatcher.post("/chat/completions", body(0, 0), "r0")
        assert info.value.kind == "timeout" and "call_timeout_s" in str(info.value)
        assert time.monotonic() - started < 2.5
