"""Wire tests: injected faults (in process and through the admin endpoint of a child)."""

import asyncio
import time

import aiohttp
import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer, launch_embedded

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("kind,etype", [("503", "ServiceUnavailableError"), ("429", "TooManyRequests"),
                                         ("500", "InternalServerError")])
async def test_error_faults(make_wire, kind, etype):
    w = await make_wire(fault_rate=1.0, fault_kinds=(kind,))
    status, body = await w.post("/v1/chat/completions", CHAT)
    assert status == int(kind)
    assert body["error"]["type"] == etype and body["error"]["code"] == int(kind)
    assert w.server.stats()["faults"]["injected"] == {kind: 1}
    assert (await w.get("/health"))[0] == 200  # health and metrics are never faulted


async def test_drop_closes_the_connection(make_wire):
    w = await make_wire(fault_rate=1.0, fault_kinds=("drop",))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await w.post("/v1/chat/completions", CHAT)
    w.server.set_faults(0.0)
    assert (await w.post("/v1/chat/completions", CHAT))[0] == 200


async def test_hang_needs_a_client_timeout(make_wire):
    w = await make_wire(fault_rate=1.0, fault_kinds=("hang",))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await w.post("/v1/chat/completions", CHAT, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 2.0
    for _ in range(50):  # the server notices the client went away
        if w.server.metrics.running == 0:
            break
        await asyncio.sleep(0.02)
    assert w.server.metrics.running == 0


async def test_slow_fault_answers_late(make_wire):
    w = await make_wire(fault_rate=1.0, fault_kinds=("slow",))
    started = time.monotonic()
    assert (await w.post("/v1/completions", {"prompt": "hi"}))[0] == 200
    assert time.monotonic() - started >= 1.9


async def test_rate_is_honoured_and_seeded(make_wire):
    async def statuses(seed):
        w = await make_wire(fault_rate=0.3, fault_kinds=("503", "429"), seed=seed)
        out = [(await w.post("/v1/chat/completions", CHAT))[0] for _ in range(200)]
        return out, w.server.stats()

    first, stats = await statuses(7)
    again, _ = await statuses(7)
    other, _ = await statuses(8)
    assert first == again and first != other
    failed = sum(s != 200 for s in first)
    assert 30 <= failed <= 90
    assert sum(stats["faults"]["injected"].values()) == failed
    assert set(stats["faults"]["injected"]) == {"503", "429"}
    assert stats["requests"]["chat"] == 200


async def test_set_faults_validates():
    async with EmbeddedServer() as srv:
        with pytest.raises(ValueError):
            srv.set_faults(0.5, ["teapot"])
        with pytest.raises(ValueError):
            srv.set_faults(1.5)


async def test_fail_health(make_wire):
    w = await make_wire(fail_health=True)
    assert (await w.get("/health"))[0] == 503
    w.server.set_fail_health(False)
    assert (await w.get("/health"))[0] == 200


async def test_admin_endpoint_in_a_subprocess(wire_to):
    async with launch_embedded(EmbeddedConfig(seed=1)) as proc:
        w = wire_to(proc.base_url)
        assert (await w.post("/v1/chat/completions", CHAT))[0] == 200
        status, body = await w.post("/_admin/faults", {"rate": 1.0, "kinds": ["503"]})
        assert status == 200 and body["faults"]["rate"] == 1.0
        assert (await w.post("/v1/chat/completions", CHAT))[0] == 503
        assert (await w.post("/_admin/faults", {"kinds": ["drop"]}))[0] == 200
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await w.post("/v1/chat/completions", CHAT)
        assert (await w.post("/_admin/faults", {"rate": 0, "fail_health": True}))[0] == 200
        assert (await w.get("/health"))[0] == 503
        assert (await w.post("/v1/chat/completions", CHAT))[0] == 200
        status, body = await w.post("/_admin/faults", {"rate": 0.5, "kinds": ["teapot"]})
        assert status == 400 and "teapot" in body["error"]["message"]
        async with w.session.get(w.root + "/_admin/stats") as resp:
            stats = await resp.json()
        assert stats["requests"]["chat"] == 4
        assert stats["faults"]["injected"] == {"503": 1, "drop": 1}
        assert stats["fail_health"] is True
