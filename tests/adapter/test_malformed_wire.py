"""A server answering unusable 200s is a failing server, on the wire: two embedded servers on
127.0.0.1, one of them answering every generation with a broken body (garbage, wrong shape,
usage contradicting the ids); the rollouts complete on the other, the broken one is taken out
like a 5xx one. A lone broken server fails the call with its name and a body excerpt. A 200
without usage is counted from the ids, or recorded as unknown (``usage: null``), never 0."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any, AsyncIterator

import pytest
from openai.types.responses import Response

from gym_rollouts.adapter.answer import EXCERPT_CHARS
from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.connect import open_policy
from gym_rollouts.config.schema import ModelConfig, RouterConfig, TransportConfig
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer
from gym_rollouts.embedded.faults import GARBAGE_BODY
from gym_rollouts.errors import MalformedReplyError

from adapter_harness import calls_with_ids, rollout

FAST_ROUTER = RouterConfig(health_interval_s=0.2, health_timeout_s=2.0, down_cooldown_s=0.3, down_cooldown_max_s=3.0)
FAST_TRANSPORT = TransportConfig(connect_timeout_s=3.0, read_timeout_s=20.0, backoff_base_s=0.01,
                                 backoff_max_s=0.05, retry_deadline_s=30.0)


@contextlib.asynccontextmanager
async def fleet(*servers: EmbeddedConfig, **model: Any) -> AsyncIterator[tuple[VLLMPolicy, list[EmbeddedServer]]]:
    """Embedded servers in process, and a policy routing over them in the given order."""
    async with contextlib.AsyncExitStack() as stack:
        started = [await stack.enter_async_context(EmbeddedServer(cfg)) for cfg in servers]
        cfg = dataclasses.replace(ModelConfig(), **model)
        policy, _ = await stack.enter_async_context(open_policy(
            cfg, [s.base_url for s in started], transport=FAST_TRANSPORT, router=FAST_ROUTER))
        yield policy, started


def broken(kind: str) -> EmbeddedConfig:
    return EmbeddedConfig(fault_rate=1.0, fault_kinds=(kind,))


@pytest.mark.parametrize("kind,capture", [("garbage", False), ("bad_shape", False), ("bad_usage", True)])
async def test_rollouts_complete_on_the_good_server_and_the_broken_one_is_taken_out(kind: str, capture: bool):
    async with fleet(broken(kind), EmbeddedConfig(), return_token_id_information=capture) as (policy, (bad, good)):
        results = await asyncio.gather(*(rollout(policy) for _ in range(8)))
        by_server = {s["server"]: s for s in policy.dispatcher.stats()}
        retries = policy.dispatcher.retries_by_kind
    for outcome, session in results:
        assert outcome.reward == 1.0 and outcome.stop_reason == "answer"
        assert set(session.servers) == {good.base_url}
    assert bad.faults.stats()["injected"][kind] >= 1  # the broken server was tried, and answered 200
    bad_stats = by_server[bad.base_url]
    assert bad_stats["completed"] == 0 and bad_stats["failed"] >= 1 and bad_stats["downs"] >= 1
    assert bad_stats["client_errors"] == 0
    assert retries.get("malformed", 0) == bad_stats["failed"]
    assert by_server[good.base_url]["failed"] == 0


async def test_a_lone_garbage_server_fails_the_call_naming_it_with_an_excerpt():
    async with fleet(broken("garbage")) as (policy, (bad,)):
        with pytest.raises(MalformedReplyError) as caught:
            await policy.session().respond({"input": "What is 2 + 3?", "max_output_tokens": 16})
        [stats] = policy.dispatcher.stats()
    err = caught.value
    assert err.server == bad.base_url and err.retryable
    message = str(err)
    assert message.startswith(f"{bad.base_url}/chat/completions answered HTTP 200 with a body we cannot use: not JSON")
    excerpt = message.split("bytes): ", 1)[1]
    assert 0 < len(excerpt) <= EXCERPT_CHARS and GARBAGE_BODY.decode().startswith(excerpt.split(" … ")[0])
    budget = FAST_TRANSPORT.retry_budget["malformed"]
    assert bad.requests["chat"] == 1 + budget and stats["failed"] == 1 + budget and stats["downs"] >= 1


async def test_without_usage_and_without_ids_the_usage_is_unknown_not_zero():
    async with fleet(broken("no_usage")) as (policy, _):
        outcome, session = await rollout(policy)
        stats = policy.stats()
    Response.model_validate(outcome.response)
    assert outcome.reward == 1.0 and outcome.response["usage"] is None
    assert stats["usage_unknown_calls"] == outcome.model_calls == 2 and stats["usage_filled_from_ids"] == 0
    assert session.known_prompt_len is None


@pytest.mark.parametrize("return_token_ids", [True, False], ids=["ids in the reply", "ids from /tokenize"])
async def test_without_usage_the_counts_come_from_the_token_ids(return_token_ids: bool):
    server = dataclasses.replace(broken("no_usage"), return_token_ids_supported=return_token_ids)
    async with fleet(server, return_token_id_information=True) as (policy, _):
        outcome, _ = await rollout(policy)
        stats = policy.stats()
    usage = outcome.response["usage"]
    calls = calls_with_ids(outcome.response)
    assert len(calls) == outcome.model_calls == 2
    assert usage["input_tokens"] == sum(len(c["prompt_token_ids"]) for c in calls) > 0
    assert usage["output_tokens"] == sum(len(c["generation_token_ids"]) for c in calls) > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert stats["usage_filled_from_ids"] == 2 and stats["usage_unknown_calls"] == 0
