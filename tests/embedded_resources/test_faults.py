"""Wire tests: per-route fault injection through /_control/faults, against the real child."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from gym_rollouts.embedded_resources import ControlError
from resources_helpers import ROW, response_obj

WEATHER = {"city": "Oslo"}
WEATHER_OK = (200, {"city": "Oslo", "weather_description": "The weather in Oslo is cold."})


@pytest.mark.parametrize("mode", ["500", "503"])
async def test_error_status_modes_answer_json_with_the_cookie(client, control, mode):
    control.set_fault("/get_weather", mode)
    c = client()
    status, body = await c.post("/get_weather", WEATHER)
    assert status == int(mode) and isinstance(body, dict) and mode in body["detail"]
    assert c.last_set_cookie
    assert (await c.post("/get_weather", WEATHER))[0] == int(mode)  # no count: until changed
    assert await c.post("/increment_counter", {"count": 1}) == (200, {"success": True})  # other routes fine


async def test_422_mode_is_a_validation_error_body(client, control):
    control.set_fault("/get_weather", "422")
    status, body = await client().post("/get_weather", WEATHER)
    assert status == 422 and body["detail"][0]["type"] == "missing" and body["detail"][0]["loc"][0] == "body"


async def test_malformed_mode_is_200_with_a_body_that_is_not_json(client, control, http, server):
    control.set_fault("/verify", "malformed")
    async with http.post(server.url + "/verify", json={**ROW, "response": response_obj()}) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        with pytest.raises(ValueError):
            await resp.json()


async def test_drop_mode_closes_the_connection(client, control):
    control.set_fault("/seed_session", "drop", count=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await client().post("/seed_session", ROW)
    assert (await client().post("/seed_session", ROW))[0] == 200  # count 1: the next one is fine


async def test_hang_mode_never_answers_and_counts_in_flight(client, control):
    control.set_fault("/get_weather", "hang")
    task = asyncio.create_task(client().post("/get_weather", WEATHER, timeout=5))
    deadline = time.monotonic() + 3
    while (await asyncio.to_thread(control.stats))["in_flight"].get("/get_weather", 0) != 1:
        assert time.monotonic() < deadline and not task.done(), "the hung request never arrived"
        await asyncio.sleep(0.02)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 0.3)
    task.cancel()  # the client gives up: the server drops the hung handler
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 3
    while (await asyncio.to_thread(control.stats))["in_flight"].get("/get_weather", 0):
        assert time.monotonic() < deadline, "the abandoned request stayed in flight"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("slow_ms, floor", [(None, 0.3), (150, 0.15)])  # None: the server's --slow-ms 300
async def test_slow_mode_answers_late(client, control, slow_ms, floor):
    control.set_fault("/get_weather", "slow", count=1, slow_ms=slow_ms)
    started = time.monotonic()
    assert await client().post("/get_weather", WEATHER) == WEATHER_OK
    assert time.monotonic() - started >= floor
    started = time.monotonic()
    assert await client().post("/get_weather", WEATHER) == WEATHER_OK
    assert time.monotonic() - started < floor


async def test_count_then_back_to_normal_and_stats(client, control):
    before = control.stats()["faults_injected"].get("/increment_counter", {}).get("500", 0)
    table = control.set_fault("/increment_counter", "500", count=2)
    assert table == {"/increment_counter": {"mode": "500", "remaining": 2, "slow_ms": 300.0}}
    c = client()
    statuses = [(await c.post("/increment_counter", {"count": 1}))[0] for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    stats = control.stats()
    assert stats["faults_injected"]["/increment_counter"]["500"] - before == 2 and stats["faults"] == {}
    assert [e["fault"] for e in control.requests(limit=4)] == ["500", "500", None, None]


async def test_star_covers_every_route_and_a_route_entry_wins(client, control):
    control.set_fault("*", "503")
    c = client()
    assert (await c.get("/"))[0] == 503 and (await c.post("/get_weather", WEATHER))[0] == 503
    control.set_fault("/get_weather", "ok", count=1)  # one pass, then back under "*"
    assert await c.post("/get_weather", WEATHER) == WEATHER_OK
    assert (await c.post("/get_weather", WEATHER))[0] == 503
    assert (await c.get("/_control/stats"))[0] == 200  # control routes are never faulted
    control.set_fault("*", "ok")  # clears the table
    assert control.faults() == {} and await c.get("/") == (200, {"status": "ok"})
    control.set_fault("*", "500", count=2)  # one count shared by all routes
    assert [(await c.get("/"))[0], (await c.post("/get_weather", WEATHER))[0], (await c.get("/"))[0]] == [500, 500, 200]


async def test_concurrency_is_measured_per_route(client, control):
    control.set_fault("/get_counter_value", "slow", slow_ms=300)
    calls = [asyncio.create_task(client().post("/get_counter_value")) for _ in range(5)]
    await asyncio.sleep(0.15)
    mid = await asyncio.to_thread(control.stats)
    results = await asyncio.gather(*calls)
    assert all(r == (200, {"count": 0}) for r in results)
    assert mid["in_flight"]["/get_counter_value"] == 5 and mid["in_flight_total"] >= 5
    after = control.stats()
    assert after["max_in_flight"]["/get_counter_value"] == 5 and "/get_counter_value" not in after["in_flight"]


@pytest.mark.parametrize("body, message", [
    ({"route": "/nope", "mode": "500"}, "unknown route"),
    ({"route": "/verify", "mode": "boom"}, "unknown fault mode"),
    ({"route": "/verify", "mode": "500", "count": 0}, "count must be a positive integer"),
    ({"route": "/verify", "mode": "500", "slow_ms": 5}, "slow_ms only applies"),
    ({"route": "/verify", "mode": "500", "cnt": 1}, "unknown keys"),
    ({"mode": "500"}, "required"),
])
def test_control_refuses_what_it_does_not_support(control, body, message):
    with pytest.raises(ControlError, match=message):
        control._call("POST", "/_control/faults", body)
    assert control.faults() == {}


def test_request_log_limit_and_clear(control, server):
    import urllib.request
    for _ in range(3):
        urllib.request.urlopen(server.url + "/").read()
    assert len(control.requests(limit=2)) == 2 and control.requests(limit=0) == []
    assert control.clear_requests() >= 3 and control.requests() == []
    with pytest.raises(ControlError, match="limit"):
        control._call("GET", "/_control/requests?limit=x")
