"""Wire tests: the resources-server protocol of the embedded double against the real child."""

from __future__ import annotations

import pytest

from resources_helpers import COOKIE, ROW, call, message, response_obj

TOOL_ROUTES = {"/get_weather", "/increment_counter", "/get_counter_value"}


async def test_health_and_openapi_list_every_post_route(client):
    c = client()
    assert await c.get("/") == (200, {"status": "ok"})
    assert c.last_set_cookie  # the session cookie rides on every answer, health included
    status, doc = await c.get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/seed_session", "/verify", "/aggregate_metrics"} | TOOL_ROUTES
    assert all(set(ops) == {"post"} for ops in doc["paths"].values())
    weather = doc["paths"]["/get_weather"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert weather["required"] == ["city"] and weather["properties"]["city"]["type"] == "string"


async def test_tools_answer_like_nemo_gym(client):
    c = client()
    assert await c.post("/get_weather", {"city": "Paris"}) == (
        200, {"city": "Paris", "weather_description": "The weather in Paris is cold."})
    assert await c.post("/increment_counter", {"count": 2}) == (200, {"success": True})
    assert await c.post("/get_counter_value", data=b"not even json") == (200, {"count": 2})


async def test_stateful_rollout_keeps_state_with_the_cookie_only(client, server, control):
    c = client()
    assert await c.post("/seed_session", {**ROW, "initial_count": 3}) == (200, {})
    first = c.cookie
    assert first and first.count(".") == 1
    for n in (1, 2):
        assert (await c.post("/increment_counter", {"count": n}))[0] == 200
    assert c.cookie == first  # the same session comes back on every answer
    assert await c.post("/get_counter_value") == (200, {"count": 6})
    row = {**ROW, "expected_count": 6, "response": response_obj([call("increment_counter")] * 2)}
    status, out = await c.post("/verify", row)
    assert status == 200 and out["reward"] == 1.0 and out["num_tool_calls"] == 2
    assert out["expected_count"] == 6 and out["response"] == row["response"]  # the request is echoed

    # without the cookie: a fresh session, which has no state -> 0.0, like NeMo Gym's example
    stranger = client()
    status, out = await stranger.post("/verify", row)
    assert (status, out["reward"]) == (200, 0.0) and stranger.cookie != first
    # a forged cookie is no cookie
    forged = client(cookie=first[:-2] + ("AA" if not first.endswith("AA") else "BB"))
    assert (await forged.post("/verify", row))[1]["reward"] == 0.0 and forged.cookie != first
    # the wrong count scores 0 within the right session
    assert (await c.post("/verify", {**row, "expected_count": 5}))[1]["reward"] == 0.0

    assert [e["path"] for e in control.requests(limit=4)] == ["/verify"] * 4
    mine = [e for e in control.requests() if e["session_id"] == first.split(".")[0]]
    assert [e["path"] for e in mine][:4] == ["/seed_session", "/increment_counter", "/increment_counter",
                                            "/get_counter_value"]
    assert mine[0]["cookie"] is None and mine[0]["new_session"] is True
    assert mine[1]["cookie"] == f"{COOKIE}={first}" and mine[1]["body"] == {"count": 1}


async def test_sessions_are_countable(client, control):
    before = control.stats()
    for _ in range(3):
        assert (await client().post("/seed_session", ROW))[0] == 200
    assert (await client().post("/get_weather", {"city": "x"}))[0] == 200  # stateless tool: no state
    after = control.stats()
    assert after["sessions_alive"] - before["sessions_alive"] == 3
    assert after["sessions_issued"] - before["sessions_issued"] == 4
    assert after["requests"]["/seed_session"] - before["requests"].get("/seed_session", 0) == 3


@pytest.mark.parametrize("row, reward, extracted", [
    ({"expected_answer": "42"}, 1.0, "The answer is 42."),
    ({"expected_answer": 42}, 1.0, "The answer is 42."),
    ({"expected_answer": "41"}, 0.0, "The answer is 42."),
    ({}, 1.0, None),
])
async def test_verify_rewards_by_answer(client, row, reward, extracted):
    response = response_obj([call(), {"type": "function_call_output", "call_id": "c1", "output": "{}"},
                             message("The answer is 41?"), message("The answer is 42.")])
    status, out = await client().post("/verify", {**ROW, **row, "response": response})
    assert status == 200 and out["reward"] == reward and out["num_tool_calls"] == 1
    assert out.get("extracted_answer") == extracted and ("extracted_answer" in out) == ("expected_answer" in row)


async def test_verify_without_an_assistant_message(client):
    status, out = await client().post("/verify", {**ROW, "expected_answer": "x", "response": response_obj([call()])})
    assert (status, out["reward"], out["extracted_answer"]) == (200, 0.0, None)


@pytest.mark.parametrize("path, body, detail", [
    ("/get_weather", {}, [{"type": "missing", "loc": ["body", "city"], "msg": "Field required", "input": {}}]),
    ("/get_weather", {"city": 3},
     [{"type": "string_type", "loc": ["body", "city"], "msg": "Input should be a valid string", "input": 3}]),
    ("/get_weather", {"city": "a", "unit": "c"},
     [{"type": "extra_forbidden", "loc": ["body", "unit"], "msg": "Extra inputs are not permitted", "input": "c"}]),
    ("/get_weather", [1], [{"type": "model_attributes_type", "loc": ["body"],
                            "msg": "Input should be a valid dictionary or object to extract fields from", "input": [1]}]),
    ("/increment_counter", {"count": "x"}, [{"type": "int_parsing", "loc": ["body", "count"],
                                              "msg": "Input should be a valid integer, unable to parse string as an integer",
                                              "input": "x"}]),
    ("/increment_counter", {"count": 1.5}, [{"type": "int_from_float", "loc": ["body", "count"],
                                              "msg": "Input should be a valid integer, got a number with a fractional part",
                                              "input": 1.5}]),
    ("/seed_session", {"initial_count": None},
     [{"type": "int_type", "loc": ["body", "initial_count"], "msg": "Input should be a valid integer", "input": None}]),
    ("/verify", ROW, [{"type": "missing", "loc": ["body", "response"], "msg": "Field required", "input": ROW}]),
    ("/verify", {**ROW, "response": {k: v for k, v in response_obj().items() if k != "output"}},
     [{"type": "missing", "loc": ["body", "response", "output"], "msg": "Field required",
       "input": {k: v for k, v in response_obj().items() if k != "output"}}]),
])
async def test_bad_arguments_get_fastapi_shaped_422(client, path, body, detail):
    c = client()
    assert await c.post(path, body) == (422, {"detail": detail})
    assert c.last_set_cookie  # the cookie is set on a 422 too


async def test_422_on_bodies_fastapi_refuses(client):
    c = client()
    status, out = await c.post("/get_weather", data=b'{"city": ', headers={"Content-Type": "application/json"})
    assert status == 422 and out["detail"][0]["type"] == "json_invalid" and out["detail"][0]["loc"][0] == "body"
    assert await c.post("/get_weather", data=b"") == (
        422, {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]})
    # JSON text without a JSON content type is a string to FastAPI, not an object
    status, out = await c.post("/get_weather", data=b'{"city": "x"}', headers={"Content-Type": "text/plain"})
    assert status == 422 and out["detail"][0]["type"] == "model_attributes_type"
    assert out["detail"][0]["input"] == '{"city": "x"}'
    extra = {**ROW, "response": response_obj()}
    extra["responses_create_params"] = {**ROW["responses_create_params"], "chat_template_kwargs": {}}
    status, out = await c.post("/verify", extra)
    assert status == 422 and out["detail"][0]["loc"] == ["body", "responses_create_params", "chat_template_kwargs"]


async def test_unknown_route_and_wrong_method(client):
    c = client()
    assert await c.post("/no_such_tool", {}) == (404, {"detail": "Not Found"})
    assert await c.get("/verify") == (405, {"detail": "Method Not Allowed"})


async def test_aggregate_metrics_minimal(client):
    rows = [{"_ng_task_index": 0, "reward": 1.0}, {"_ng_task_index": 0, "reward": 0.0},
            {"_ng_task_index": 1, "reward": 1.0}]
    status, out = await client().post("/aggregate_metrics", {"verify_responses": rows})
    assert status == 200 and out["agent_metrics"] == {"mean/reward": 2 / 3, "num_rollouts": 3}
    assert [g["mean/reward"] for g in out["group_level_metrics"]] == [0.5, 1.0]
    status, out = await client().post("/aggregate_metrics", {"verify_responses": [{"_ng_task_index": 0}]})
    assert status == 422 and out["detail"][0]["loc"] == ["body", "verify_responses", 0, "reward"]
