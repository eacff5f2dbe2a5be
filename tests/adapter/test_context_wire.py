"""Context length on the wire: every vLLM refusal ends the rollout ``incomplete`` (stop reason
``context_length``), never as a failure; ``max_tokens`` is clamped under ``max_model_len``."""

from __future__ import annotations

import aiohttp
import pytest
from openai.types.responses import Response

from gym_rollouts.adapter.client import CONTEXT_LENGTH
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer

from adapter_harness import ARITH_ROW, embedded_policy, rollout

USER_ONLY = {"input": [{"role": "user", "content": "What is (43 * 21) + 14?"}]}


async def prompt_len(params: dict) -> int:
    """Length of the arithmetic row's first prompt as the embedded server renders it."""
    from gym_rollouts.adapter.request import build_chat_body
    from gym_rollouts.config.schema import ModelConfig

    body = build_chat_body(params, ModelConfig(), "gym-tiny")
    async with EmbeddedServer(EmbeddedConfig()) as server:
        async with aiohttp.ClientSession() as http:
            req = {"model": "gym-tiny", "messages": body["messages"], "tools": body.get("tools"), "add_generation_prompt": True}
            async with http.post(server.base_url.removesuffix("/v1") + "/tokenize", json=req) as resp:
                return (await resp.json())["count"]


class Recorder:
    """Wraps the policy's dispatcher to keep every body sent and every error answered."""

    def __init__(self, policy):
        self.bodies, self.errors = [], []
        inner = policy.dispatcher.post

        async def post(path, body, key, **kw):
            self.bodies.append(dict(body))
            try:
                return await inner(path, body, key, **kw)
            except Exception as exc:
                self.errors.append(getattr(exc, "server_message", str(exc)))
                raise
        policy.dispatcher.post = post


def assert_incomplete(outcome):
    assert outcome.stop_reason == CONTEXT_LENGTH
    assert outcome.response["status"] == "incomplete"
    assert outcome.response["incomplete_details"] is not None
    Response.model_validate(outcome.response)


async def test_prompt_too_long():
    n = await prompt_len(ARITH_ROW["responses_create_params"])
    async with embedded_policy(EmbeddedConfig(max_model_len=n - 1)) as (policy, _):
        rec = Recorder(policy)
        outcome, _ = await rollout(policy)
    assert_incomplete(outcome)
    assert outcome.response["output"] == [] and outcome.model_calls == 1
    assert "maximum context length is" in rec.errors[0]
    assert policy.context_length_stops == 1


async def test_prompt_exactly_at_the_limit():
    n = await prompt_len(ARITH_ROW["responses_create_params"])
    async with embedded_policy(EmbeddedConfig(max_model_len=n)) as (policy, _):
        rec = Recorder(policy)
        outcome, _ = await rollout(policy, max_output_tokens=None)
    assert_incomplete(outcome)
    assert rec.errors[0].startswith("max_tokens must be at least 1, got 0")


async def test_max_tokens_above_max_model_len_without_clamp():
    async with embedded_policy(EmbeddedConfig(max_model_len=2000), clamp_max_tokens_to_context=False) as (policy, _):
        rec = Recorder(policy)
        outcome, _ = await rollout(policy, max_output_tokens=4000)
    assert_incomplete(outcome)
    assert rec.errors[0].startswith("max_tokens=4000 cannot be greater than max_model_len=2000")


async def test_clamp_caps_first_call_and_uses_the_previous_turns_length():
    async with embedded_policy(EmbeddedConfig(max_model_len=2000), return_token_id_information=True) as (policy, _):
        rec = Recorder(policy)
        outcome, _ = await rollout(policy, max_output_tokens=4000)
    assert outcome.stop_reason == "answer" and outcome.reward == 1.0
    first, second = rec.bodies
    assert first["max_tokens"] == 2000  # prompt length unknown: capped at max_model_len
    call = outcome.response["output"][0]
    assert call["type"] == "function_call"
    known = call["prompt_token_ids"] + call["generation_token_ids"]
    assert second["max_tokens"] == 2000 - len(known)  # the room left after the first call
    assert policy.clamped_calls == 2 and not rec.errors


async def test_generation_cut_by_the_context_is_a_context_stop():
    n = await prompt_len(ARITH_ROW["responses_create_params"])
    async with embedded_policy(EmbeddedConfig(max_model_len=n + 10), return_token_id_information=True) as (policy, _):
        outcome, _ = await rollout(policy)
    assert_incomplete(outcome)
    (call,) = [i for i in outcome.response["output"] if "generation_token_ids" in i]
    assert len(call["generation_token_ids"]) == 10  # the server gave what fit; the ids are kept
    assert call["status"] == "incomplete"


async def test_no_room_left_stops_without_a_request():
    n = await prompt_len(ARITH_ROW["responses_create_params"])
    params = {**ARITH_ROW["responses_create_params"], "max_output_tokens": None}
    async with embedded_policy(EmbeddedConfig(max_model_len=n + 40), return_token_id_information=True) as (policy, _):
        rec = Recorder(policy)
        session = policy.session()
        first = await session.respond(params)  # the server fills the context: 40 tokens
        second = await session.respond(params)  # known length == max_model_len: not sent
    assert first.incomplete_reason == CONTEXT_LENGTH and len(first.generation_token_ids) == 40
    assert second.incomplete_reason == CONTEXT_LENGTH and second.output == []
    assert len(rec.bodies) == 1 and policy.context_length_stops == 2


@pytest.mark.parametrize("max_output_tokens", [None, 256])
async def test_context_stop_in_a_later_turn_keeps_earlier_output(max_output_tokens):
    async with embedded_policy(return_token_id_information=True) as (policy, _):
        reference, _ = await rollout(policy)
    first = reference.response["output"][0]
    used = len(first["prompt_token_ids"]) + len(first["generation_token_ids"])
    # room for the first call (prompt + tool call), not for the second prompt (+ the tool output)
    async with embedded_policy(EmbeddedConfig(max_model_len=used + 5), return_token_id_information=True) as (policy, _):
        rec = Recorder(policy)
        outcome, session = await rollout(policy, max_output_tokens=max_output_tokens)
    assert_incomplete(outcome)
    assert [i["type"] for i in outcome.response["output"]] == ["function_call", "function_call_output"]
    assert outcome.response["output"][0]["generation_token_ids"] == first["generation_token_ids"]
    assert rec.bodies[1]["max_tokens"] == 5 and "maximum context length" in rec.errors[0]
    assert outcome.model_calls == 2
