"""A multi-turn tool rollout end to end over a real socket: agent loop -> adapter -> router ->
transport -> the embedded vLLM-compatible server, and back. The ``response`` object validates
against the OpenAI SDK's Responses types."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import orjson
import pytest
from openai.types.responses import Response

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.startup import discover_fleet
from gym_rollouts.agent.loop import request_params, run_rollout
from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import CollectConfig, build_collect_config
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer
from gym_rollouts.engine.session import bundled_dataset
from gym_rollouts.io.source import materialize
from gym_rollouts.resource.base import load_resource
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.transport.client import HttpTransport


def first_row(name: str) -> dict:
    return orjson.loads(bundled_dataset(name).read_bytes().splitlines()[0])


@contextlib.asynccontextmanager
async def policy_for(cfg: CollectConfig) -> AsyncIterator[VLLMPolicy]:
    async with HttpTransport(cfg.transport, concurrency=4, api_key=cfg.model.api_key) as transport:
        fleet = await discover_fleet(transport, cfg.model.base_url, cfg.model.model)
        async with Dispatcher(fleet.base_urls, transport, cfg.router, cfg.transport) as dispatcher:
            yield VLLMPolicy(cfg.model, dispatcher, model_name=fleet.model_name, max_model_len=fleet.max_model_len)


async def rollout(cfg: CollectConfig, row: dict):
    resource = load_resource(cfg.resource)
    async with policy_for(cfg) as policy:
        session = policy.session()
        try:
            return await run_rollout(row, params=request_params(materialize(row, cfg.responses_create_params, "agent"), resource),
                                     resource=resource, session=session, cfg=cfg.agent,
                                     model_name=policy.model_name)
        finally:
            session.close()


@pytest.mark.parametrize("resource", ["arithmetic", "weather"])
async def test_multi_turn_tool_rollout(resource: str, embedded_server):
    cfg = build_collect_config(compose_plain([f"resource={resource}", f"policy_base_url={embedded_server.base_url}"]))
    row = first_row(cfg.resource.example_dataset)
    outcome = await rollout(cfg, row)

    assert outcome.reward == 1.0 and outcome.stop_reason == "answer"
    assert outcome.model_calls >= 2 and outcome.tool_calls >= 1
    response = outcome.response
    parsed = Response.model_validate(response)
    assert parsed.status == "completed" and parsed.model == "gym-tiny"
    kinds = [item["type"] for item in response["output"]]
    assert kinds[-1] == "message" and "function_call" in kinds and "function_call_output" in kinds
    calls = {i["call_id"]: i for i in response["output"] if i["type"] == "function_call"}
    outputs = [i for i in response["output"] if i["type"] == "function_call_output"]
    assert [o["call_id"] for o in outputs] == list(calls)  # each call answered, in order
    for out in outputs:
        assert isinstance(out["output"], str) and not out["output"].startswith("Error")
        assert kinds.index("function_call_output") > kinds.index("function_call")
    usage = response["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


async def test_token_capture_and_reasoning_over_the_wire():
    """vllm_for_training against a server that thinks and splits reasoning like vLLM's parser:
    each model call's last item carries its token ids; reasoning items validate too."""
    async with EmbeddedServer(EmbeddedConfig(reasoning=True, reasoning_parser="qwen3")) as server:
        cfg = build_collect_config(compose_plain(["model=vllm_for_training", f"policy_base_url={server.base_url}"]))
        outcome = await rollout(cfg, first_row("arithmetic.jsonl"))
    assert outcome.reward == 1.0
    response = outcome.response
    Response.model_validate(response)
    output = response["output"]
    assert output[0]["type"] == "reasoning" and output[0]["summary"][0]["text"]
    carriers = [i for i in output if "generation_token_ids" in i]
    assert len(carriers) == outcome.model_calls
    previous_end = 0
    for item in carriers:
        assert len(item["generation_token_ids"]) == len(item["generation_log_probs"]) > 0
        assert len(item["prompt_token_ids"]) > previous_end  # each prompt extends the last call
        previous_end = len(item["prompt_token_ids"]) + len(item["generation_token_ids"])
