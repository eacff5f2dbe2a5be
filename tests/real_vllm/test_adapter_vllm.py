"""Our adapter (VLLMPolicy + Dispatcher + HttpTransport, and the agent loop) against a real vLLM.

A random tiny model never writes a tool call or a ``<think>`` block by itself, so those texts are
forced with vLLM's structured outputs (``structured_outputs: {"regex": ...}``, sent through the
row's ``metadata.extra_body``); the hermes tool parser / the reasoning parser then run as in
production. Every expectation is computed from the server itself (``/tokenize``,
``/detokenize``), nothing is hard-coded but vLLM's documented error texts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from typing import Any

import aiohttp
import orjson
import pytest
from openai.types.responses import Response

from gym_rollouts.adapter.client import CONTEXT_LENGTH, TOOL_PARSER_HINT
from gym_rollouts.adapter.connect import open_policy
from gym_rollouts.agent.loop import run_rollout
from gym_rollouts.config.schema import AgentConfig, ModelConfig
from gym_rollouts.errors import ToolSupportError
from gym_rollouts.resource.arithmetic import CALCULATE_TOOL, ArithmeticResource

pytestmark = pytest.mark.real_vllm

TOOL_TEXT = '<tool_call>\n{"name": "calculate", "arguments": {"expression": "2 + 3"}}\n</tool_call>'
THINK_TEXT = "<think>add the two numbers</think>\n\nfive"


def base_url(server: Any) -> str:
    return str(getattr(server, "base_url", server)).rstrip("/")


def root_url(server: Any) -> str:
    return base_url(server).removesuffix("/v1")


def forced(regex_text: str, **extra: Any) -> dict[str, str]:
    """``metadata`` making vLLM generate exactly ``regex_text`` (a JSON string, as in NeMo Gym rows)."""
    body = {"structured_outputs": {"regex": re.escape(regex_text)}, "temperature": 0.0, **extra}
    return {"extra_body": orjson.dumps(body).decode()}


@contextlib.asynccontextmanager
async def policy_on(server: Any, **model: Any):
    served = os.environ.get("GYM_ROLLOUTS_VLLM_MODEL")  # else the single model the server serves
    cfg = dataclasses.replace(ModelConfig(return_token_id_information=True, model=served), **model)
    async with open_policy(cfg, [base_url(server)]) as (policy, fleet):
        policy.recorder = Recorder(policy)
        yield policy


class Recorder:
    """Keeps every body our policy sent and every error text the server answered."""

    def __init__(self, policy: Any) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.errors: list[str] = []
        inner = policy.dispatcher.post

        async def post(path, body, key, **kw):
            self.bodies.append(dict(body))
            try:
                return await inner(path, body, key, **kw)
            except Exception as exc:
                self.errors.append(getattr(exc, "server_message", str(exc)))
                raise
        policy.dispatcher.post = post


async def server_post(server: Any, path: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.post(root_url(server) + path, json=body, timeout=aiohttp.ClientTimeout(total=120)) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def tokenize_messages(server: Any, model: str, messages: list[dict], tools: list | None = None) -> list[int]:
    body: dict[str, Any] = {"model": model, "messages": messages, "add_generation_prompt": True}
    if tools:
        body["tools"] = tools
    return (await server_post(server, "/tokenize", body))["tokens"]


async def detokenize(server: Any, model: str, ids: list[int]) -> str:
    return (await server_post(server, "/detokenize", {"model": model, "tokens": ids}))["prompt"]


async def text_ids(server: Any, model: str, text: str) -> list[int]:
    body = {"model": model, "prompt": text, "add_special_tokens": False}
    return (await server_post(server, "/tokenize", body))["tokens"]


async def single_token_word(server: Any, model: str) -> tuple[str, int]:
    for word in ("return", "import", "def", "class", "the"):
        ids = await text_ids(server, model, word)
        if len(ids) == 1:
            return word, ids[0]
    pytest.skip("no candidate word is a single token for this tokenizer")


def items(turn_or_response: Any) -> list[tuple]:
    output = turn_or_response["output"] if isinstance(turn_or_response, dict) else turn_or_response.output
    out = []
    for item in output:
        if item["type"] == "reasoning":
            out.append(("reasoning", [s["text"] for s in item["summary"]]))
        elif item["type"] == "message":
            out.append(("message", item["content"][0]["text"]))
        else:
            out.append((item["type"],))
    return out


# -- token capture -----------------------------------------------------------------------------

async def test_token_ids_and_logprobs(real_vllm):
    user = [{"role": "user", "content": "Say something about the sea."}]
    async with policy_on(real_vllm) as policy:
        turn = await policy.session().respond({"input": user, "max_output_tokens": 12, "temperature": 0.0})
        model = policy.model_name
    assert len(turn.generation_token_ids) == len(turn.generation_log_probs) == turn.usage["output_tokens"] > 0
    assert all(isinstance(v, float) and v <= 0.0 for v in turn.generation_log_probs)
    assert turn.prompt_token_ids == await tokenize_messages(real_vllm, model, user)
    assert len(turn.prompt_token_ids) == turn.usage["input_tokens"]
    # the generation ids spell exactly the text we put in the message item
    gen = turn.generation_token_ids
    text = await detokenize(real_vllm, model, gen[:-1] if turn.finish_reason == "stop" else gen)
    assert items(turn)[-1] == ("message", text)
    assert turn.output[-1]["generation_token_ids"] == gen
    sent = policy.recorder.bodies[0]
    assert (sent["logprobs"], sent["top_logprobs"], sent["return_tokens_as_token_ids"], sent["return_token_ids"]) == \
        (True, 0, True, True)


async def test_prompt_ids_over_two_turns_are_continuous(real_vllm):
    """Turn 1 is pinned to one token that re-renders to itself (allowed_token_ids + regex), so the
    second prompt must continue prompt 1 + generation 1 exactly; the tracker must say so, and agree
    with the ids /tokenize gives for the second conversation."""
    async with policy_on(real_vllm) as policy:
        model = policy.model_name
        word, word_id = await single_token_word(real_vllm, model)
        session = policy.session()
        first_input = [{"role": "user", "content": "Name a Python keyword."}]
        first = await session.respond({"input": first_input, "max_output_tokens": 1,
                                       "metadata": forced(word, allowed_token_ids=[word_id])})
        second_input = first_input + first.output + [{"role": "user", "content": "Another one?"}]
        second = await session.respond({"input": second_input, "max_output_tokens": 4})
    assert first.generation_token_ids == [word_id]
    history = first.prompt_token_ids + first.generation_token_ids
    assert second.prompt_token_ids[:len(history)] == history
    messages = [*first_input, {"role": "assistant", "content": word}, {"role": "user", "content": "Another one?"}]
    assert second.prompt_token_ids == await tokenize_messages(real_vllm, model, messages)
    assert session.continuity.summary() == {"continuous": True, "checked_calls": 1, "broken_calls": 0,
                                            "first_mismatch": None}


async def test_continuity_break_is_recorded_with_its_position(real_vllm):
    """Dropping reasoning from history (uses_interleaved_reasoning=false) changes what the template
    renders: the break is recorded where the second prompt first departs from prompt 1 +
    generation 1 (found here by a plain scan), never repaired."""
    async with policy_on(real_vllm, uses_interleaved_reasoning=False) as policy:
        session = policy.session()
        first_input = [{"role": "user", "content": "What is 2 + 3?"}]
        first = await session.respond({"input": first_input, "max_output_tokens": 40, "metadata": forced(THINK_TEXT)})
        second = await session.respond({"input": first_input + first.output + [{"role": "user", "content": "Sure?"}],
                                        "max_output_tokens": 2})
    assert items(first) == [("reasoning", ["add the two numbers"]), ("message", "\n\nfive")]
    history, prompt = first.prompt_token_ids + first.generation_token_ids, second.prompt_token_ids
    position = next(i for i, want in enumerate(history) if i >= len(prompt) or prompt[i] != want)
    assert position <= len(first.prompt_token_ids)  # at the latest where the dropped <think> began
    summary = session.continuity.summary()
    assert summary == {"continuous": False, "checked_calls": 1, "broken_calls": 1,
                       "first_mismatch": {"call": 1, "position": position, "expected": history[position],
                                          "actual": prompt[position]}}


# -- tools ---------------------------------------------------------------------------------------

async def test_forced_tool_call_is_parsed_by_hermes_into_a_function_call(real_vllm):
    row = {"responses_create_params": {"input": [{"role": "user", "content": "What is 2 + 3?"}],
                                       "tools": [CALCULATE_TOOL], "max_output_tokens": 80,
                                       "metadata": forced(TOOL_TEXT)},
           "expected_answer": "5"}
    async with policy_on(real_vllm) as policy:
        session = policy.session()
        outcome = await run_rollout(row, params=row["responses_create_params"], resource=ArithmeticResource(),
                                    session=session, cfg=AgentConfig(max_steps=1), model_name=policy.model_name)
        model = policy.model_name
    Response.model_validate(outcome.response)
    call, result = outcome.response["output"]
    assert (call["type"], call["name"], orjson.loads(call["arguments"])) == ("function_call", "calculate",
                                                                            {"expression": "2 + 3"})
    assert call["call_id"] and call["status"] == "completed"
    assert (result["type"], result["call_id"], result["output"]) == ("function_call_output", call["call_id"], "5")
    text = await detokenize(real_vllm, model, call["generation_token_ids"])
    assert text.startswith(TOOL_TEXT)
    assert len(call["prompt_token_ids"]) == outcome.response["usage"]["input_tokens"]
    tools = policy.recorder.bodies[0]["tools"]
    assert call["prompt_token_ids"] == await tokenize_messages(
        real_vllm, model, [{"role": "user", "content": "What is 2 + 3?"}], tools)


async def test_tools_refused_without_a_tool_parser(real_vllm_no_tools):
    row = {"responses_create_params": {"input": "What is 2 + 3?", "tools": [CALCULATE_TOOL], "max_output_tokens": 8}}
    async with policy_on(real_vllm_no_tools) as policy:
        with pytest.raises(ToolSupportError) as info:
            await run_rollout(row, params=row["responses_create_params"], resource=ArithmeticResource(),
                              session=policy.session(), cfg=AgentConfig(max_steps=1), model_name=policy.model_name)
        server_text = policy.recorder.errors[0]
    assert "--enable-auto-tool-choice" in server_text and "--tool-call-parser" in server_text
    assert TOOL_PARSER_HINT in str(info.value) and server_text in str(info.value)


# -- reasoning -------------------------------------------------------------------------------------

async def test_inline_think_parsed_by_us(real_vllm):
    async with policy_on(real_vllm) as policy:
        turn = await policy.session().respond({"input": "What is 2 + 3?", "max_output_tokens": 40,
                                               "metadata": forced(THINK_TEXT)})
        sent_extra = policy.recorder.bodies[0]["structured_outputs"]
        model = policy.model_name
    assert sent_extra == {"regex": re.escape(THINK_TEXT)}
    assert items(turn) == [("reasoning", ["add the two numbers"]), ("message", "\n\nfive")]
    assert (await detokenize(real_vllm, model, turn.generation_token_ids)).startswith(THINK_TEXT)


async def test_same_text_split_by_a_real_reasoning_parser(real_vllm_reasoning):
    async with policy_on(real_vllm_reasoning) as policy:
        turn = await policy.session().respond({"input": "What is 2 + 3?", "max_output_tokens": 40,
                                               "metadata": forced(THINK_TEXT)})
        async with aiohttp.ClientSession() as http:  # what the server itself returned for the same request
            body = {**policy.recorder.bodies[0]}
            async with http.post(base_url(real_vllm_reasoning) + "/chat/completions", json=body) as resp:
                raw_message = (await resp.json())["choices"][0]["message"]
        model = policy.model_name
    # the server split it (this is the path under test), and we accepted its split
    split_off = raw_message.get("reasoning") or raw_message.get("reasoning_content")
    assert split_off == "add the two numbers"
    assert "<think>" not in (raw_message["content"] or "")
    assert items(turn) == [("reasoning", ["add the two numbers"]), ("message", raw_message["content"])]
    assert (await detokenize(real_vllm_reasoning, model, turn.generation_token_ids)).startswith(THINK_TEXT)


async def test_reasoning_passthrough_without_extraction(real_vllm_reasoning):
    async with policy_on(real_vllm_reasoning, uses_reasoning_parser=False) as policy:
        turn = await policy.session().respond({"input": "What is 2 + 3?", "max_output_tokens": 40,
                                               "metadata": forced(THINK_TEXT)})
    (message,) = items(turn)
    assert message[0] == "message" and message[1].startswith("<think>add the two numbers</think>")
    assert message[1].endswith("five")


# -- completions mode --------------------------------------------------------------------------

async def test_completions_mode_with_token_capture(real_vllm):
    async with policy_on(real_vllm, use_completions_api=True) as policy:
        turn = await policy.session().respond({"input": "def add(a, b):", "instructions": "# Python",
                                               "max_output_tokens": 8, "temperature": 0.0})
        model = policy.model_name
        body = policy.recorder.bodies[0]
    assert body["prompt"] == "# Python\n\ndef add(a, b):" and body["logprobs"] == 0
    expected = (await server_post(real_vllm, "/tokenize", {"model": model, "prompt": body["prompt"]}))["tokens"]
    assert turn.prompt_token_ids == expected
    assert len(turn.generation_token_ids) == len(turn.generation_log_probs) == turn.usage["output_tokens"] == 8
    assert items(turn)[-1] == ("message", await detokenize(real_vllm, model, turn.generation_token_ids))


# -- context length --------------------------------------------------------------------------------

async def exact_length_text(server: Any, model: str, target: int) -> str:
    """A user message whose chat prompt is exactly ``target`` tokens (skip if the tokenizer won't)."""
    overhead = len(await tokenize_messages(server, model, [{"role": "user", "content": "7"}])) - 1
    for k in sorted(range(max(1, target - overhead - 40), target - overhead + 40), key=lambda k: abs(k - target + overhead)):
        if len(await tokenize_messages(server, model, [{"role": "user", "content": "7" * k}])) == target:
            return "7" * k
    pytest.skip(f"no '7'*k message renders to exactly {target} tokens with this tokenizer")


async def context_turn(server: Any, params: dict[str, Any], **model: Any):
    async with policy_on(server, **model) as policy:
        turn = await policy.session().respond(params)
        return turn, policy


async def test_prompt_too_long(real_vllm):
    async with policy_on(real_vllm) as policy:
        mml = policy.max_model_len
    turn, policy = await context_turn(real_vllm, {"input": "7" * (mml + 10), "max_output_tokens": 4})
    assert turn.incomplete_reason == CONTEXT_LENGTH and turn.output == []
    assert policy.recorder.errors[0].startswith(f"This model's maximum context length is {mml} tokens.")


async def test_prompt_exactly_at_the_limit(real_vllm):
    async with policy_on(real_vllm) as policy:
        text = await exact_length_text(real_vllm, policy.model_name, policy.max_model_len)
    turn, policy = await context_turn(real_vllm, {"input": text})
    assert turn.incomplete_reason == CONTEXT_LENGTH and turn.output == []
    assert policy.recorder.errors[0].startswith("max_tokens must be at least 1, got 0")


async def test_max_tokens_above_max_model_len(real_vllm):
    async with policy_on(real_vllm) as policy:
        mml = policy.max_model_len
    turn, policy = await context_turn(real_vllm, {"input": "hi", "max_output_tokens": mml + 100},
                                      clamp_max_tokens_to_context=False)
    assert turn.incomplete_reason == CONTEXT_LENGTH
    assert policy.recorder.errors[0].startswith(f"max_tokens={mml + 100} cannot be greater than max_model_len={mml}")


async def test_max_tokens_above_max_model_len_is_clamped(real_vllm):
    """With the clamp on (the default) the same request is sent with max_tokens = max_model_len;
    the prompt is long enough that only a few tokens fit, and that cut is a context stop."""
    async with policy_on(real_vllm) as policy:
        mml = policy.max_model_len
        text = await exact_length_text(real_vllm, policy.model_name, mml - 3)
    params = {"input": text, "max_output_tokens": mml + 100, "metadata": forced("seven seven seven seven")}
    turn, policy = await context_turn(real_vllm, params)
    assert policy.recorder.bodies[0]["max_tokens"] == mml and not policy.recorder.errors
    assert turn.finish_reason == "length" and turn.usage["input_tokens"] + turn.usage["output_tokens"] == mml
    assert turn.incomplete_reason == CONTEXT_LENGTH and len(turn.generation_token_ids) == 3
