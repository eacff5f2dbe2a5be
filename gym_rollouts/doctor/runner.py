"""One ``doctor`` run: from the typed config to a ``Report`` (no printing here).

Order: load the resource and sample the first input rows (to know the tools on offer and the
prompts to size); resolve the servers exactly as ``collect`` does (``policy_base_url``, or the
embedded backend started for this run when it is null); probe every server at once; run the
nine checks over what was seen; then open the run's environments as collect would (check 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.doctor.check_features import check_reasoning, check_tools, check_training
from gym_rollouts.doctor.check_fleet import check_concurrency, check_context, check_fleet, check_throughput
from gym_rollouts.doctor.check_server import check_base_url, check_model, check_reachability
from gym_rollouts.doctor.facts import FleetFacts
from gym_rollouts.doctor.findings import Finding, Report
from gym_rollouts.doctor.probe import RawRow, probe_fleet, sample_rows
from gym_rollouts.engine.session import backend, input_path
from gym_rollouts.errors import ConfigError
from gym_rollouts.doctor.check_environments import check_environments
from gym_rollouts.resource.base import load_resource
from gym_rollouts.resource.routing import is_remote_resource
from gym_rollouts.transport.client import HttpTransport

EMBEDDED_NOTE = ("policy_base_url is null, so doctor started the embedded backend (servers.*) exactly "
                 "as collect would, and checked that. Set policy_base_url to check your vLLM servers.")


def build_report(cfg: CollectConfig, facts: FleetFacts) -> Report:
    """Every check over the probed facts (pure)."""
    findings: list[Finding] = []
    for s in facts.servers:
        findings += [check_reachability(s), check_base_url(s), check_model(s, cfg.model.model),
                     check_tools(cfg, facts, s), check_reasoning(cfg, s), check_training(cfg, s),
                     check_throughput(s)]
    findings += [check_context(cfg, facts), check_concurrency(cfg, facts), check_fleet(cfg, facts)]
    findings = list(dict.fromkeys(findings))  # a config-wide verdict once, not once per server
    report = Report(findings=findings, servers=tuple(s.configured for s in facts.servers),
                    model=facts.model(cfg.model.model), embedded=facts.embedded)
    if facts.embedded:
        report.notes.append(EMBEDDED_NOTE)
    return report


def _offered_tools(cfg: CollectConfig, rows: list[RawRow], resource: Any) -> tuple[list[dict[str, Any]], str | None]:
    configured = cfg.responses_create_params.get("tools")
    if configured:
        return list(configured), "responses_create_params.tools"
    for _line, row, _problem in rows:
        if row is not None and row["responses_create_params"].get("tools"):
            return list(row["responses_create_params"]["tools"]), "the input rows"
    if resource is not None and resource.tools():
        return list(resource.tools()), f"resource '{cfg.resource.name}'"
    return [], None


async def _prepare(cfg: CollectConfig) -> tuple[FleetFacts, list[RawRow], Any]:
    facts = FleetFacts(servers=[], embedded=cfg.uses_embedded_backend)
    resource = None
    try:
        resource = None if is_remote_resource(cfg.resource) else load_resource(cfg.resource)
    except ConfigError as exc:
        facts.tools_error = f"the resource cannot be loaded: {exc}"
    rows: list[RawRow] = []
    made = resource.generated_rows() if resource is not None and not cfg.input_jsonl_fpath else None
    if made is not None:  # a resource that generates its tasks (engine/generated_inputs.py): sample those
        facts.input_path = f"the tasks {resource.describe()} generates"
        rows = [(n, dict(r), None) for n, r in zip(range(1, cfg.doctor.sample_rows + 1), made)]
    else:
        try:
            path = input_path(cfg)
            facts.input_path = str(path)
            rows = await asyncio.to_thread(sample_rows, path, cfg.doctor.sample_rows)
        except (ConfigError, OSError) as exc:
            facts.input_error = str(exc)
    facts.tools, facts.tools_source = _offered_tools(cfg, rows, resource)
    return facts, rows, resource


async def _environments(cfg: CollectConfig, rows: list[RawRow], tcfg: Any) -> list[Finding]:
    async with HttpTransport(tcfg, concurrency=16) as transport:  # no policy API key for environments
        return await check_environments(cfg, rows, transport)


async def run_doctor(cfg: CollectConfig) -> Report:
    facts, rows, resource = await _prepare(cfg)
    timeout = cfg.doctor.timeout_s
    tcfg = dataclasses.replace(cfg.transport, connect_timeout_s=min(cfg.transport.connect_timeout_s, timeout),
                               read_timeout_s=timeout)
    async with contextlib.AsyncExitStack() as stack:
        urls = await stack.enter_async_context(backend(cfg))
        transport = await stack.enter_async_context(
            HttpTransport(tcfg, concurrency=2 * len(urls), api_key=cfg.model.api_key))
        await probe_fleet(transport, cfg, tuple(urls), facts, rows, resource)
    report = build_report(cfg, facts)
    report.findings += await _environments(cfg, rows, tcfg)
    return report
