"""The rules input rows are read by, built from the config and the run's environments.

One ``RowRules`` (io/source.py) for the scan and the job stream alike: NeMo Gym's
``prompt_config`` templating, the config's ``responses_create_params`` overrides, the default
agent (``agent_name``), per-agent ``num_repeats``, ``num_repeats_add_seed``, and the per-row check
run before any request: the row's agent must map to an environment that serves every tool the row
offers (resource/routing.py), ``num_repeats`` must cover its agent, and its request fields must be
ones the vLLM adapter can send (adapter/request.py), sampling values included
(adapter/sampling.py).

Checked once per run, before the scan: the sampling values the config adds (the
``responses_create_params`` overrides merged into every row, ``model.temperature`` /
``model.top_p`` / ``model.sampling_overrides``), so a bad one is one ``ConfigError`` rather than
the same problem on every line. After the scan: an input that leaves no rollout to run (an empty
file, only blank lines, ``limit=0``, a shard that owns no task, every row bad) is refused with what
was empty (``refuse_empty``), exit 2, instead of a run that writes nothing and succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gym_rollouts.adapter.request import request_problems
from gym_rollouts.adapter.sampling import body_sampling_problems, sampling_problems
from gym_rollouts.agent.loop import request_params
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.errors import ConfigError, InputError
from gym_rollouts.io.prompt import load_prompt_template
from gym_rollouts.io.source import InputScan, RowRules, problem_listing
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


def config_sampling_problems(cfg: CollectConfig) -> list[str]:
    """The sampling values the config sets on every request that vLLM would refuse."""
    problems = sampling_problems(cfg.responses_create_params)
    problems += body_sampling_problems({k: getattr(cfg.model, k) for k in ("temperature", "top_p")}, "model.")
    problems += body_sampling_problems(cfg.model.sampling_overrides, "model.sampling_overrides.")
    return problems


def refuse_empty(cfg: CollectConfig) -> Callable[[InputScan], None]:
    """``RowRules.refuse_empty`` for a run: the error naming what left nothing to run."""
    def refuse(scan: InputScan) -> None:
        path = scan.path
        if cfg.limit == 0:
            raise ConfigError(f"limit=0 selects no row of {path}: set limit to the number of rows to run "
                              f"(or null for all of them)")
        if scan.rows == 0:
            what = (f"its {scan.blank_lines} line(s) are all blank" if scan.blank_lines
                    else "the file is empty (0 bytes)")
            raise InputError(f"input_jsonl_fpath={path} holds no task row: {what}. Give a JSONL file with one "
                             f"task per line (a JSON object with responses_create_params); nothing was sent.")
        if scan.good_rows == 0:
            skip = " (on_bad_input=skip leaves nothing to run)" if cfg.on_bad_input == "skip" else ""
            raise InputError(f"none of the {scan.rows} row(s) of {path} can run: every one is bad{skip}; "
                             f"nothing was sent. Fix them:" + problem_listing(scan), list(scan.problems))
        raise ConfigError(f"shard_index={cfg.shard_index} of num_shards={cfg.num_shards} owns no task of {path} "
                          f"(a shard owns the task indices i with i % {cfg.num_shards} == {cfg.shard_index}; "
                          f"the input has {scan.good_rows} good row(s)): use fewer shards; nothing was sent.")
    return refuse


def row_rules(cfg: CollectConfig, table: EnvironmentTable) -> RowRules:
    """The run's rules; a sampling value of the config that vLLM would refuse is a ``ConfigError``."""
    problems = config_sampling_problems(cfg)
    if problems:
        raise ConfigError("the config sets sampling values vLLM refuses (nothing was sent):\n  "
                          + "\n  ".join(problems))
    prompt = load_prompt_template(cfg.prompt_config) if cfg.prompt_config else None
    repeats: Any = cfg.num_repeats
    if not isinstance(repeats, int):
        def repeats(row: dict[str, Any]) -> int:  # noqa: F811 - the per-agent form
            return cfg.repeats_of(agent_of(row))
    return RowRules(overrides=dict(cfg.responses_create_params), agent_name=table.default_agent, repeats=repeats,
                    prepare=prompt.apply if prompt else None, check=row_check(cfg, table),
                    add_seed=cfg.num_repeats_add_seed, refuse_empty=refuse_empty(cfg))


def prompt_fingerprint(cfg: CollectConfig) -> dict[str, Any] | None:
    """The template text decides what is collected: it goes into the run manifest."""
    if not cfg.prompt_config:
        return None
    prompt = load_prompt_template(cfg.prompt_config)
    return {"path": prompt.path, "user": prompt.user, "system": prompt.system}
