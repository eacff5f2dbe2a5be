"""``VLLMPolicy`` on the wire, against the embedded vLLM-compatible server on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import pytest
from openai.types.responses import Response

from gym_rollouts.adapter.client import TOOL_PARSER_HINT
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.errors import ToolSupportError

from adapter_harness import ARITH_ROW, calls_with_ids, embedded_policy, rollout


async def tokenize(root_url: str, body: dict) -> list[int]:
    async with aiohttp.ClientSession() as http:
        async with http.post(root_url + "/tokenize", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["tokens"]


def root(server) -> str:
    return server.base_url.removesuffix("/v1")


async def test_token_capture_over_a_two_call_rollout():
    async with embedded_policy(return_token_id_information=True) as (policy, server):
        outcome, session = await rollout(policy)
    Response.model_validate(outcome.response)
    assert outcome.stop_reason == "answer" and outcome.model_calls == 2 and outcome.reward == 1.0
    calls = calls_with_ids(outcome.response)
    assert len(calls) == 2
    # ids sit on the last output item of each model call: the function_call, then the final message
    assert [c["type"] for c in calls] == ["function_call", "message"]
    assert outcome.response["output"][-1] is calls[-1]
    for c in calls:
        assert len(c["generation_token_ids"]) == len(c["generation_log_probs"]) > 0
        assert all(isinstance(v, float) and v <= 0 for v in c["generation_log_probs"])
    usage = outcome.response["usage"]
    assert usage["output_tokens"] == sum(len(c["generation_token_ids"]) for c in calls)
    assert usage["input_tokens"] == sum(len(c["prompt_token_ids"]) for c in calls)
    # the second prompt continues the first prompt + generation exactly (the embedded template keeps it)
    first, second = calls
    prefix = first["prompt_token_ids"] + first["generation_token_ids"]
    assert second["prompt_token_ids"][:len(prefix)] == prefix
    assert session.continuity.summary() == {"continuous": True, "checked_calls": 1, "broken_calls": 0,
                                            "first_mismatch": None}


async def test_prompt_ids_match_tokenize():
    async with embedded_policy(return_token_id_information=True) as (policy, server):
        turn = await policy.session().respond({"input": "What is 2 + 3?", "max_output_tokens": 32})
        expected = await tokenize(root(server), {"model": policy.model_name, "add_generation_prompt": True,
                                                 "messages": [{"role": "user", "content": "What is 2 + 3?"}]})
    assert turn.prompt_token_ids == expected
    assert turn.output[-1]["prompt_token_ids"] == expected


async def test_tokenize_fallback_for_servers_without_return_token_ids():
    async with embedded_policy(return_token_id_information=True) as (policy, _):
        reference, _ = await rollout(policy)
    async with embedded_policy(EmbeddedConfig(return_token_ids_supported=False),
                               return_token_id_information=True) as (policy, _):
        outcome, session = await rollout(policy)
        assert policy.tokenize_fallbacks == 2
    want = [(c["prompt_token_ids"], c["generation_token_ids"]) for c in calls_with_ids(reference.response)]
    got = [(c["prompt_token_ids"], c["generation_token_ids"]) for c in calls_with_ids(outcome.response)]
    assert got == want and len(got) == 2
    assert session.continuity.summary()["continuous"] is True


async def test_tools_refused_names_the_vllm_flags():
    async with embedded_policy(EmbeddedConfig(tool_parser=False)) as (policy, _):
        with pytest.raises(ToolSupportError) as info:
            await rollout(policy)
    message = str(info.value)
    assert "--enable-auto-tool-choice --tool-call-parser" in message
    assert TOOL_PARSER_HINT in message and info.value.status == 400


async def test_inline_think_is_parsed_by_us():
    async with embedded_policy(EmbeddedConfig(reasoning=True), return_token_id_information=True) as (policy, _):
        outcome, session = await rollout(policy)
    Response.model_validate(outcome.response)
    kinds = [i["type"] for i in outcome.response["output"]]
    assert kinds == ["reasoning", "message", "function_call", "function_call_output", "reasoning", "message"]
    texts = [i["content"][0]["text"] for i in outcome.response["output"] if i["type"] == "message"]
    assert all("<think>" not in t and "</think>" not in t for t in texts)
    assert texts[-1].strip() == "The answer is 917."
    # reasoning went back inline (uses_interleaved_reasoning), so the tokens continue exactly
    assert session.continuity.summary()["continuous"] is True


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_server_split_reasoning_is_accepted(field):
    ecfg = EmbeddedConfig(reasoning=True, reasoning_parser="qwen3", reasoning_field=field)
    async with embedded_policy(ecfg, return_token_id_information=True) as (policy, _):
        turn = await policy.session().respond({"input": "What is 6 * 7?", "max_output_tokens": 128})
        outcome, session = await rollout(policy)
    assert [i["type"] for i in turn.output] == ["reasoning", "message"]
    assert turn.output[0]["summary"][0]["text"]
    assert turn.output[1]["content"][0]["text"] == "The answer is 42."
    Response.model_validate(outcome.response)
    # This server's parser drops the blank line after </think>, so history no longer re-renders the
    # generated tokens: the break is recorded (never repaired), with its position.
    summary = session.continuity.summary()
    assert summary["continuous"] is False
    assert summary["first_mismatch"]["call"] == 1 and summary["first_mismatch"]["position"] > 0


async def test_without_reasoning_parser_server_reasoning_is_put_back_inline():
    ecfg = EmbeddedConfig(reasoning=True, reasoning_parser="qwen3")
    async with embedded_policy(ecfg, uses_reasoning_parser=False) as (policy, _):
        turn = await policy.session().respond({"input": "What is 6 * 7?", "max_output_tokens": 128})
    assert [i["type"] for i in turn.output] == ["message"]
    text = turn.output[0]["content"][0]["text"]
    assert text.startswith("<think>") and text.endswith("</think>The answer is 42.")


async def test_without_reasoning_parser_inline_text_passes_through():
    async with embedded_policy(EmbeddedConfig(reasoning=True), uses_reasoning_parser=False) as (policy, _):
        turn = await policy.session().respond({"input": "What is 6 * 7?", "max_output_tokens": 128})
    assert [i["type"] for i in turn.output] == ["message"]
    assert turn.output[0]["content"][0]["text"].startswith("<think>")
    assert "</think>\n\nThe answer is 42." in turn.output[0]["content"][0]["text"]


async def test_completions_mode_with_token_capture():
    async with embedded_policy(use_completions_api=True, return_token_id_information=True) as (policy, server):
        turn = await policy.session().respond({"input": "What is 2 + 3?", "instructions": "Answer briefly.",
                                               "max_output_tokens": 64})
        expected = await tokenize(root(server), {"model": policy.model_name, "prompt": "Answer briefly.\n\nWhat is 2 + 3?"})
    assert turn.prompt_token_ids == expected
    assert len(turn.generation_token_ids) == len(turn.generation_log_probs) == turn.usage["output_tokens"] > 0
    assert turn.output[-1]["generation_token_ids"] == turn.generation_token_ids


@pytest.mark.parametrize("request_max,expected_tokens", [(None, 3), (5, 5)], ids=["fills in", "request wins"])
async def test_metadata_extra_body_reaches_the_server(request_max, expected_tokens):
    params = {"input": "Tell me about the weather today please.", "metadata": {"extra_body": '{"max_tokens": 3}'}}
    if request_max:
        params["max_output_tokens"] = request_max
    async with embedded_policy(return_token_id_information=True) as (policy, _):
        turn = await policy.session().respond(params)
    assert len(turn.generation_token_ids) == turn.usage["output_tokens"] == expected_tokens
    assert turn.incomplete_reason == "max_output_tokens"
