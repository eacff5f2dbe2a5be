"""One rollout: seed -> (model turn -> tool calls -> tool outputs)* -> verify -> reward.

Stops when the model answers without tool calls, after ``max_steps`` model calls, when a turn is
cut by ``max_output_tokens``, or when the context is exhausted (``context_length``). Invalid tool
call arguments and tool errors go back to the model as the tool output; they never crash the
rollout. Exceptions from the model side or the verifier propagate to the engine's per-rollout
guard, which records them as failed attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from gym_rollouts.adapter.client import CONTEXT_LENGTH, PolicySession
from gym_rollouts.adapter.ids import new_id
from gym_rollouts.adapter.messages import input_items
from gym_rollouts.config.schema import AgentConfig
from gym_rollouts.errors import ResourceError
from gym_rollouts.records import add_usage, build_response, empty_usage
from gym_rollouts.resource.base import Resource, ToolCallError


@dataclass
class RolloutOutcome:
    response: dict[str, Any]
    reward: float
    verifier_extras: dict[str, Any]
    stop_reason: str  # "answer" | "max_steps" | "max_output_tokens" | "context_length"
    model_calls: int
    tool_calls: int


def request_params(row: Mapping[str, Any], resource: Resource) -> dict[str, Any]:
    """The row's ``responses_create_params`` plus the resource's default tools. ``row`` is a
    materialized row (``io.source.materialize``: config overrides already merged)."""
    params = dict(row["responses_create_params"])
    if "tools" not in params:
        tools = resource.tools()
        if tools:
            params["tools"] = tools
    return params


async def _run_tool(resource: Resource, state: Any, call: Mapping[str, Any]) -> str:
    try:
        arguments = orjson.loads(call["arguments"] or "{}")
    except orjson.JSONDecodeError as exc:
        return resource.bad_arguments(call["name"], f"are not valid JSON ({exc})")
    if not isinstance(arguments, dict):
        return resource.bad_arguments(call["name"], "must be a JSON object")
    try:
        return await resource.call_tool(state, call["name"], arguments)
    except ToolCallError as exc:
        return f"Error: {exc}"


async def run_rollout(row: Mapping[str, Any], *, params: Mapping[str, Any], resource: Resource,
                      session: PolicySession, cfg: AgentConfig, model_name: str) -> RolloutOutcome:
    try:
        state = await resource.seed(row)
    except ResourceError:
        raise
    except Exception as exc:  # a resource bug: the engine records this attempt as failed
        raise ResourceError(f"resource {resource.name}.seed failed: {type(exc).__name__}: {exc}") from exc
    try:
        return await _loop(row, params, resource, state, session, cfg, model_name)
    finally:
        await resource.close(state)  # success, failure or cancellation: the rollout's state goes


async def _loop(row: Mapping[str, Any], params: Mapping[str, Any], resource: Resource, state: Any,
                session: PolicySession, cfg: AgentConfig, model_name: str) -> RolloutOutcome:
    history = list(input_items(params.get("input")) or [])
    output: list[dict[str, Any]] = []
    usage = empty_usage()
    usage_known = True  # False once a call's usage is unknown: the sum would be a guess, so null
    stop_reason, model_calls, tool_calls = "max_steps", 0, 0
    while model_calls < cfg.max_steps:
        turn = await session.respond({**params, "input": history + output})
        model_calls += 1
        output.extend(turn.output)
        if turn.usage is None:
            usage_known = False
        else:
            add_usage(usage, turn.usage)
        if turn.incomplete_reason:
            stop_reason = turn.incomplete_reason
            break
        calls = turn.function_calls
        if not calls:
            stop_reason = "answer"
            break
        for call in calls:
            tool_calls += 1
            try:
                result = await _run_tool(resource, state, call)
            except ResourceError:
                raise  # already names the resource and the call
            except Exception as exc:
                raise ResourceError(f"tool {call['name']} of resource {resource.name} crashed: "
                                    f"{type(exc).__name__}: {exc}") from exc
            output.append({"id": new_id("fco"), "type": "function_call_output", "call_id": call["call_id"],
                           "output": result, "status": "completed"})
    incomplete = stop_reason in ("max_output_tokens", CONTEXT_LENGTH)
    # the response records the sampling actually sent (model.temperature etc. included)
    response = build_response(params={**params, **session.sampling}, model=model_name, output=output,
                              usage=usage if usage_known else None, incomplete=incomplete)
    try:
        verdict = await resource.verify(row, response, state)
    except ResourceError:
        raise
    except Exception as exc:
        raise ResourceError(f"resource {resource.name}.verify failed: {type(exc).__name__}: {exc}") from exc
    return RolloutOutcome(response=response, reward=float(verdict.reward), verifier_extras=dict(verdict.extras),
                          stop_reason=stop_reason, model_calls=model_calls, tool_calls=tool_calls)
