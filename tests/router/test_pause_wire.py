"""Pausing over real sockets against embedded servers (child processes): the dispatcher's gate in
wait and abort mode, deadlines moved on by the pause, the embedded server's vLLM dev-mode routes
through ``FleetControl`` (and its 404 message), a generation aborted server-side sent again."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiohttp import web

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.config.schema import ModelConfig, WeightsConfig
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.errors import ConfigError
from gym_rollouts.router.fleet_control import FleetControl
from gym_rollouts.router.pause import PauseControl, open_pause
from gym_rollouts.transport.client import HttpTransport

from router_harness import FAST_TRANSPORT, body, by_server, open_dispatcher, wait_for


async def _chat_count(http: HttpTransport, root: str) -> int:
    import orjson

    status, raw = await http.get(root + "/_admin/stats")
    assert status == 200
    return int(orjson.loads(raw)["requests"].get("chat", 0))


async def test_wait_mode_finishes_in_flight_calls_and_holds_new_ones(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(latency_ms=400.0))
    gate = PauseControl("v1")
    async with open_dispatcher([proc.base_url], dispatcher_kw={"pause": gate}) as d:
        first = [asyncio.ensure_future(d.post("/chat/completions", body(i, 0), f"r{i}")) for i in range(4)]
        await wait_for(lambda: d.servers[0].in_flight == 4, 5, "4 calls in flight")
        started = time.monotonic()
        await asyncio.wait_for(gate.pause("wait"), 5)
        assert all(f.done() and not f.exception() for f in first), "wait mode returned before in-flight calls ended"
        assert time.monotonic() - started > 0.2
        held = [asyncio.ensure_future(d.post("/chat/completions", body(i, 1), f"r{i}")) for i in range(3)]
        await asyncio.sleep(0.3)
        assert not any(f.done() for f in held) and d.servers[0].in_flight == 0
        assert await _chat_count(d.transport, proc.root_url) == 4  # nothing sent while paused
        gate.resume("v2")
        await asyncio.wait_for(asyncio.gather(*held), 10)
        assert await _chat_count(d.transport, proc.root_url) == 7
        stats = by_server(d)[proc.base_url]
        assert (stats["completed"], stats["failed"], stats["retried"], stats["abandoned"]) == (7, 0, 0, 0)


async def test_abort_mode_abandons_and_redoes_without_failures(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(latency_ms=1500.0), EmbeddedConfig(latency_ms=1500.0))
    gate = PauseControl()
    async with open_dispatcher([p.base_url for p in procs], dispatcher_kw={"pause": gate}) as d:
        calls = [asyncio.ensure_future(d.post("/chat/completions", body(i, 0), f"r{i}")) for i in range(6)]
        await wait_for(lambda: sum(s.in_flight for s in d.servers) == 6, 5, "6 calls in flight")
        started = time.monotonic()
        await asyncio.wait_for(gate.pause("abort"), 2)
        assert time.monotonic() - started < 1.0 and gate.aborted_calls == 6
        assert not any(c.done() for c in calls)
        await asyncio.sleep(0.2)
        gate.resume("v2")
        results = await asyncio.wait_for(asyncio.gather(*calls), 15)
        assert all(reply["choices"][0]["message"]["content"] for _, reply in results)
        for p in procs:
            row = by_server(d)[p.base_url]
            assert (row["failed"], row["retried"], row["abandoned"], row["up"]) == (0, 0, 0, True), row
        assert sum(r["completed"] for r in d.stats()) == 6 and d.retries_by_kind == {}


async def test_a_pause_longer_than_the_call_deadline_does_not_time_the_call_out(start_fleet) -> None:
    (proc,) = start_fleet(EmbeddedConfig(latency_ms=300.0))
    transport = dataclasses.replace(FAST_TRANSPORT, call_timeout_s=1.0, retry_deadline_s=1.0)
    gate = PauseControl()
    async with open_dispatcher([proc.base_url], transport=transport,
                               dispatcher_kw={"pause": gate, "vllm_servers": True}) as d:
        await gate.pause("wait")
        call = asyncio.ensure_future(d.post("/chat/completions", body(0, 0), "r0"))
        await asyncio.sleep(1.5)  # longer than call_timeout_s
        gate.resume()
        server, reply = await asyncio.wait_for(call, 5)
        assert server == proc.base_url and reply["choices"]


async def test_fleet_control_against_the_embedded_server(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(), EmbeddedConfig())
    async with HttpTransport(FAST_TRANSPORT, concurrency=4) as http:
        fleet = FleetControl(http, [p.base_url for p in procs])
        assert await fleet.weight_versions() == {p.base_url: "default" for p in procs}  # vLLM's initial one
        assert await fleet.is_paused() == {p.base_url: False for p in procs}
        await fleet.pause("keep")
        assert await fleet.is_paused() == {p.base_url: True for p in procs}
        await fleet.update_weight_version("step-3")
        await fleet.resume()
        assert await fleet.is_paused() == {p.base_url: False for p in procs}
        assert await fleet.weight_versions() == {p.base_url: "step-3" for p in procs}
        with pytest.raises(ConfigError, match="server pause mode must be one of abort, wait, keep"):
            await fleet.pause("later")
        answer = await http.post(procs[0].root_url + "/pause?mode=later", b"")
        assert answer.status == 400  # as vLLM: a bad mode is refused


async def test_embedded_paused_server_queues_requests_and_abort_ends_them(start_fleet) -> None:
    import orjson

    (proc,) = start_fleet(EmbeddedConfig(latency_ms=2000.0))
    async with HttpTransport(FAST_TRANSPORT, concurrency=4) as http:
        fleet = FleetControl(http, [proc.base_url])
        url, data = proc.base_url + "/chat/completions", orjson.dumps(body(0, 0))
        running = asyncio.ensure_future(http.post(url, data))
        await asyncio.sleep(0.5)
        await fleet.pause("abort")
        answer = await asyncio.wait_for(running, 2)
        assert answer.status == 200 and orjson.loads(answer.body)["choices"][0]["finish_reason"] == "abort"
        queued = asyncio.ensure_future(http.post(url, data))
        tokenized = await http.post(proc.root_url + "/tokenize", orjson.dumps({"model": "gym-tiny", "prompt": "hi"}))
        assert tokenized.status == 200  # not a generation: answered while paused, as vLLM does
        await asyncio.sleep(0.3)
        assert not queued.done()
        await fleet.resume()
        answer = await asyncio.wait_for(queued, 5)
        assert orjson.loads(answer.body)["choices"][0]["finish_reason"] != "abort"


async def test_fleet_control_names_dev_mode_on_404() -> None:
    app = web.Application()  # a real server without the dev-mode routes (every path 404)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with HttpTransport(FAST_TRANSPORT, concurrency=2) as http:
            fleet = FleetControl(http, [f"http://127.0.0.1:{port}/v1"])
            for op in (fleet.pause("wait"), fleet.resume(), fleet.weight_versions(), fleet.is_paused()):
                with pytest.raises(ConfigError, match="VLLM_SERVER_DEV_MODE=1"):
                    await op
            with pytest.raises(ConfigError, match="VLLM_SERVER_DEV_MODE=1"):
                await open_pause(WeightsConfig(read_server_version=True), http, (f"http://127.0.0.1:{port}/v1",))
    finally:
        await runner.cleanup()


async def test_server_pause_and_server_versions_through_the_gate(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(latency_ms=100.0), EmbeddedConfig(latency_ms=100.0))
    urls = tuple(p.base_url for p in procs)
    async with open_dispatcher(urls) as d0:
        http = d0.transport
        gate = await open_pause(WeightsConfig(server_pause=True, read_server_version=True), http, urls)
        assert gate.server_versions == {u: "default" for u in urls} and gate.version_for(urls[0]) == "default"
        await gate.pause("abort")
        assert await gate.fleet.is_paused() == {u: True for u in urls}
        await gate.resume_async("v9")
        assert await gate.fleet.is_paused() == {u: False for u in urls}
        assert gate.server_versions == {u: "v9" for u in urls} and gate.version_for(urls[1]) == "v9"


async def test_a_generation_aborted_server_side_is_sent_again(start_fleet) -> None:
    """A server paused with mode=abort by someone else answers 200 finish_reason=abort: the adapter
    must not take that truncated turn; the call is sent again and answered after /resume."""
    (proc,) = start_fleet(EmbeddedConfig(latency_ms=1500.0))
    async with open_dispatcher([proc.base_url], dispatcher_kw={"pause": PauseControl("v1")}) as d:
        policy = VLLMPolicy(ModelConfig(), d, model_name="gym-tiny", max_model_len=4096)
        session = policy.session()
        turn = asyncio.ensure_future(session.respond({"input": "what is 2 + 3?"}))
        await wait_for(lambda: d.servers[0].in_flight == 1, 5, "the call in flight")
        fleet = FleetControl(d.transport, [proc.base_url])
        await fleet.pause("abort")
        await asyncio.sleep(0.3)
        await fleet.resume()
        result = await asyncio.wait_for(turn, 15)
        assert result.finish_reason != "abort" and result.output
        assert session.servers == [proc.base_url] and session.weight_versions == ["v1"]
        assert d.retries_by_kind.get("stalled") == 1
