"""Verifiers and tools of the bundled resources, and the loader that builds one from config."""

from __future__ import annotations

import pytest

from gym_rollouts.adapter.reply import message_item
from gym_rollouts.config.schema import ResourceConfig
from gym_rollouts.errors import ConfigError
from gym_rollouts.resource.arithmetic import ArithmeticResource
from gym_rollouts.resource.base import ToolCallError, final_text, load_resource
from gym_rollouts.resource.exact_match import ExactMatchResource
from gym_rollouts.resource.weather import WeatherResource


def response(*texts: str, calls: tuple[str, ...] = ()) -> dict:
    output = [{"type": "function_call", "name": n, "call_id": f"c{i}", "arguments": "{}", "id": f"fc{i}",
               "status": "completed"} for i, n in enumerate(calls)]
    return {"output": output + [message_item(t) for t in texts]}


@pytest.mark.parametrize(("texts", "expected", "reward"), [
    (("The answer is 779.",), "779", 1.0),
    (("The answer is 780.",), "779", 0.0),
    (("779", "Actually I am not sure."), "779", 0.0),  # only the final message counts
    ((), "779", 0.0),
    (("anything",), "", 0.0),
    (("anything",), None, 0.0),
    (("x = 12",), 12, 1.0),
])
async def test_exact_match(texts, expected, reward):
    verdict = await ExactMatchResource().verify({"expected_answer": expected}, response(*texts), None)
    assert verdict.reward == reward


async def test_arithmetic_verify_reports_tool_use():
    res = ArithmeticResource()
    used = await res.verify({"expected_answer": "917"}, response("It is 917.", calls=("calculate",)), None)
    unused = await res.verify({"expected_answer": "917"}, response("It is 917."), None)
    assert (used.reward, used.extras) == (1.0, {"used_tool": 1.0})
    assert (unused.reward, unused.extras) == (1.0, {"used_tool": 0.0})


async def test_weather_tool_and_verifier():
    res = WeatherResource()
    first = await res.call_tool(None, "get_weather", {"city": "Paris"})
    assert first == await res.call_tool(None, "get_weather", {"city": " Paris "}) and "Paris" in first
    for bad in ({}, {"city": ""}, {"city": 3}):
        with pytest.raises(ToolCallError):
            await res.call_tool(None, "get_weather", bad)
    assert (await res.verify({}, response("Sunny.", calls=("get_weather",)), None)).reward == 1.0
    assert (await res.verify({}, response("Sunny."), None)).reward == 0.0
    assert (await res.verify({}, response(calls=("get_weather",)), None)).reward == 0.0


def test_final_text_of_empty_and_reasoning_only_outputs():
    assert final_text({"output": []}) == ""
    assert final_text({"output": [{"type": "reasoning", "summary": []}]}) == ""


@pytest.mark.parametrize(("cls", "params", "needle"), [
    ("gym_rollouts.resource.arithmetic", {}, "package.module:ClassName"),
    ("gym_rollouts.resource.nope:X", {}, "cannot import"),
    ("gym_rollouts.resource.base:final_text", {}, "not a Resource subclass"),
    ("gym_rollouts.resource.arithmetic:ArithmeticResource", {"x": 1}, "takes no params"),
])
def test_load_resource_errors(cls, params, needle):
    with pytest.raises(ConfigError, match=needle):
        load_resource(ResourceConfig(name="r", cls=cls, params=params))


def test_load_resource():
    assert isinstance(load_resource(ResourceConfig()), ArithmeticResource)
