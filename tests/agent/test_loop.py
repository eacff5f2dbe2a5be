"""The agent loop driven by a scripted policy session (no server): bad tool calls become error
tool outputs the model sees, ``max_steps`` bounds the loop, resource crashes are ResourceErrors."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest

from gym_rollouts.adapter.reply import ModelTurn, message_item
from gym_rollouts.agent.loop import request_params, run_rollout
from gym_rollouts.config.schema import AgentConfig
from gym_rollouts.errors import ResourceError
from gym_rollouts.io.source import materialize
from gym_rollouts.resource.arithmetic import ArithmeticResource
from gym_rollouts.resource.base import Resource, Verification

ROW = {"responses_create_params": {"input": "What is 6 * 7?", "max_output_tokens": 64}, "expected_answer": "42"}
USAGE = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
         "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 15}


def call_turn(name: str, arguments: str, n: int = 0) -> ModelTurn:
    item = {"id": f"fc_{n}", "type": "function_call", "call_id": f"call_{n}", "name": name,
            "arguments": arguments, "status": "completed"}
    return ModelTurn(output=[item], usage=dict(USAGE), finish_reason="tool_calls")


def answer_turn(text: str) -> ModelTurn:
    return ModelTurn(output=[message_item(text)], usage=dict(USAGE), finish_reason="stop")


class ScriptedSession:
    """Stands in for ``PolicySession``: ``script(call_number, params)`` gives each turn."""

    def __init__(self, script: Callable[[int, Mapping[str, Any]], ModelTurn]) -> None:
        self.script = script
        self.seen: list[dict[str, Any]] = []
        self.sampling: dict[str, Any] = {}

    async def respond(self, params: Mapping[str, Any]) -> ModelTurn:
        self.seen.append(dict(params))
        return self.script(len(self.seen) - 1, params)


async def _run(script, resource: Resource | None = None, max_steps: int = 16, row=ROW):
    resource = resource or ArithmeticResource()
    session = ScriptedSession(script)
    params = request_params(row, resource)
    outcome = await run_rollout(row, params=params, resource=resource, session=session,  # type: ignore[arg-type]
                                cfg=AgentConfig(max_steps=max_steps), model_name="m")
    return outcome, session


def _tool_outputs(outcome) -> list[str]:
    return [i["output"] for i in outcome.response["output"] if i["type"] == "function_call_output"]


@pytest.mark.parametrize(("arguments", "needle"), [
    ('{"expression": "6 * 7"', "not valid JSON"),
    ("not json at all", "not valid JSON"),
    ('["6 * 7"]', "must be a JSON object"),
    ('{"expr": "6 * 7"}', "needs a string argument 'expression'"),
    ('{"expression": "__import__(\'os\').system(\'true\')"}', "unsupported syntax"),
])
async def test_bad_tool_call_becomes_an_error_output_and_the_model_goes_on(arguments: str, needle: str):
    def script(n, params):
        return call_turn("calculate", arguments) if n == 0 else answer_turn("The answer is 42.")

    outcome, session = await _run(script)
    (output,) = _tool_outputs(outcome)
    assert output.startswith("Error:") and needle in output
    assert outcome.stop_reason == "answer" and outcome.model_calls == 2 and outcome.tool_calls == 1
    assert outcome.reward == 1.0
    # the model saw its own call and the error output on the second turn
    second_input = session.seen[1]["input"]
    assert [i.get("type") for i in second_input[-2:]] == ["function_call", "function_call_output"]
    assert second_input[-1]["output"] == output and second_input[-1]["call_id"] == "call_0"


async def test_unknown_tool_is_reported_to_the_model():
    outcome, _ = await _run(lambda n, p: call_turn("rm_rf", "{}") if n == 0 else answer_turn("42"))
    assert _tool_outputs(outcome) == ["Error: unknown tool 'rm_rf' (available: calculate)"]


async def test_good_tool_call_round_trip_and_usage_summed():
    outcome, session = await _run(lambda n, p: call_turn("calculate", '{"expression": "6 * 7"}')
                                  if n == 0 else answer_turn("It is 42."))
    assert _tool_outputs(outcome) == ["42"]
    assert [i["type"] for i in outcome.response["output"]] == ["function_call", "function_call_output", "message"]
    usage = outcome.response["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (20, 10, 30)
    assert usage["input_tokens_details"]["cached_tokens"] == 8
    assert usage["output_tokens_details"]["reasoning_tokens"] == 2
    assert session.seen[0]["tools"] == ArithmeticResource().tools()  # default tools offered
    assert session.seen[0]["input"] == [{"role": "user", "content": "What is 6 * 7?", "type": "message"}]


@pytest.mark.parametrize("max_steps", [1, 3])
async def test_max_steps_bounds_the_loop(max_steps: int):
    outcome, session = await _run(lambda n, p: call_turn("calculate", '{"expression": "1 + 1"}', n),
                                  max_steps=max_steps)
    assert len(session.seen) == outcome.model_calls == max_steps
    assert outcome.stop_reason == "max_steps" and outcome.tool_calls == max_steps
    assert outcome.reward == 0.0 and outcome.response["status"] == "completed"


def test_max_steps_default_is_bounded():
    assert 1 <= AgentConfig().max_steps <= 64


async def test_truncated_turn_ends_the_rollout_incomplete():
    def script(n, params):
        turn = call_turn("calculate", '{"expression": "1 +', n)
        turn.incomplete_reason = "max_output_tokens"
        return turn

    outcome, session = await _run(script)
    assert len(session.seen) == 1 and outcome.tool_calls == 0
    assert outcome.stop_reason == "max_output_tokens"
    assert outcome.response["status"] == "incomplete"
    assert outcome.response["incomplete_details"] == {"reason": "max_output_tokens"}


class CrashingResource(ArithmeticResource):
    async def call_tool(self, state, name, arguments):
        raise KeyError("bug in the resource")


class BadVerifier(ArithmeticResource):
    async def verify(self, row, response, state) -> Verification:
        raise ValueError("verifier bug")


async def test_resource_bugs_are_resource_errors_not_tool_outputs():
    with pytest.raises(ResourceError, match="tool calculate of resource arithmetic crashed: KeyError"):
        await _run(lambda n, p: call_turn("calculate", "{}") if n == 0 else answer_turn("x"), CrashingResource())
    with pytest.raises(ResourceError, match="verify failed: ValueError"):
        await _run(lambda n, p: answer_turn("42"), BadVerifier())


def test_request_params_config_overrides_win_and_row_tools_are_kept():
    row = {"responses_create_params": {"input": "hi", "temperature": 1.0, "tools": [{"type": "function",
                                                                                       "name": "own"}]}}
    params = request_params(materialize(row, {"temperature": 0.2, "max_output_tokens": 8}, "agent"), ArithmeticResource())
    assert params["temperature"] == 0.2 and params["max_output_tokens"] == 8
    assert params["tools"] == [{"type": "function", "name": "own"}]
    assert row["responses_create_params"]["temperature"] == 1.0  # the row itself is untouched


class CountingTools(ArithmeticResource):
    calls = 0

    def tools(self):
        self.calls += 1
        return super().tools()


def test_request_params_asks_the_resource_for_its_tools_once():
    resource = CountingTools()
    params = request_params({"responses_create_params": {"input": "hi"}}, resource)
    assert params["tools"] == ArithmeticResource().tools() and params["tools"]
    assert resource.calls == 1
    assert "tools" not in request_params({"responses_create_params": {"input": "hi"}}, Resource())
