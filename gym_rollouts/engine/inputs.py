"""The rules input rows are read by, built from the config and the run's environments.

One ``RowRules`` (io/source.py) for the scan and the job stream alike: NeMo Gym's
``prompt_config`` templating, the config's ``responses_create_params`` overrides, the default
agent (``agent_name``), per-agent ``num_repeats``, ``num_repeats_add_seed``, and the per-row check
run before any request: the row's agent must map to an environment that serves every tool the row
offers (resource/routing.py), ``num_repeats`` must cover its agent, and its request fields must be
ones the vLLM adapter can send (adapter/request.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gym_rollouts.adapter.request import request_problems
from gym_rollouts.agent.loop import request_params
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.io.prompt import load_prompt_template
from gym_rollouts.io.source import RowRules
from gym_rollouts.resource.routing import EnvironmentTable, agent_of


def row_check(cfg: CollectConfig, table: EnvironmentTable) -> Callable[[dict[str, Any]], str | None]:
    def check(row: dict[str, Any]) -> str | None:
        problem = table.row_problem(row) or cfg.repeats_problem(agent_of(row))
        if problem:
            return problem
        params = request_params(row, table.resource_of(row).resource)  # as the rollout will send them
        problems = request_problems(params, cfg.model)
        return "; ".join(problems) if problems else None
    return check


def row_rules(cfg: CollectConfig, table: EnvironmentTable) -> RowRules:
    prompt = load_prompt_template(cfg.prompt_config) if cfg.prompt_config else None
    repeats: Any = cfg.num_repeats
    if not isinstance(repeats, int):
        def repeats(row: dict[str, Any]) -> int:  # noqa: F811 - the per-agent form
            return cfg.repeats_of(agent_of(row))
    return RowRules(overrides=dict(cfg.responses_create_params), agent_name=table.default_agent, repeats=repeats,
                    prepare=prompt.apply if prompt else None, check=row_check(cfg, table),
                    add_seed=cfg.num_repeats_add_seed)


def prompt_fingerprint(cfg: CollectConfig) -> dict[str, Any] | None:
    """The template text decides what is collected: it goes into the run manifest."""
    if not cfg.prompt_config:
        return None
    prompt = load_prompt_template(cfg.prompt_config)
    return {"path": prompt.path, "user": prompt.user, "system": prompt.system}
