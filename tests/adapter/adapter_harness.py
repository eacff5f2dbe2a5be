"""Helpers for the adapter's wire tests: an embedded server with a policy bound to it, and one
arithmetic rollout through the agent loop. Imported by name (pytest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, AsyncIterator

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.connect import open_policy
from gym_rollouts.agent.loop import RolloutOutcome, run_rollout
from gym_rollouts.config.schema import AgentConfig, ModelConfig
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer
from gym_rollouts.resource.arithmetic import CALCULATE_TOOL, ArithmeticResource

SYSTEM = "You are a careful calculator assistant. Use the calculate tool, then state the result."
ARITH_ROW = {
    "responses_create_params": {
        "input": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is (43 * 21) + 14?"}],
        "tools": [CALCULATE_TOOL],
        "max_output_tokens": 256,
    },
    "expected_answer": "917",
}


@contextlib.asynccontextmanager
async def embedded_policy(ecfg: EmbeddedConfig | None = None, **model: Any) -> AsyncIterator[tuple[VLLMPolicy, EmbeddedServer]]:
    """An in-process embedded server and a ``VLLMPolicy`` on it (start-up checks included)."""
    async with EmbeddedServer(ecfg or EmbeddedConfig()) as server:
        cfg = dataclasses.replace(ModelConfig(), **model)
        async with open_policy(cfg, [server.base_url]) as (policy, _fleet):
            yield policy, server


async def rollout(policy: VLLMPolicy, row: dict[str, Any] | None = None, *, max_steps: int = 4,
                  **params: Any) -> tuple[RolloutOutcome, Any]:
    """One arithmetic rollout; returns (outcome, the policy session)."""
    row = row or ARITH_ROW
    request = {**row["responses_create_params"], **params}
    session = policy.session()
    try:
        outcome = await run_rollout(row, params=request, resource=ArithmeticResource(), session=session,
                                    cfg=AgentConfig(max_steps=max_steps), model_name=policy.model_name)
    finally:
        session.close()
    return outcome, session


def calls_with_ids(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in response["output"] if "generation_token_ids" in i]
