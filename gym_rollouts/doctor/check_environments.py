"""Check 10, ``environments``: the run's environments, as ``collect`` would open them.

The same ``EnvironmentTable`` as ``collect`` (resource/routing.py): the configured resource, the
``environments`` mapping, the NeMo Gym head server. Reported: the head server (which agents it
lists, which of them we can run), each environment (reachable? which tools it serves, or that it
cannot say), and the sampled input rows (does each row's agent map to an environment that serves
its tools?). FAIL lines carry the fix: start the environment with ``ng_run``, fix its URL, map the
agent.
"""

from __future__ import annotations

from typing import Any

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.doctor.findings import Finding, Status
from gym_rollouts.errors import ConfigError, StartupError
from gym_rollouts.io.source import materialize
from gym_rollouts.resource.base import ResourceContext
from gym_rollouts.resource.head import SIMPLE_AGENT
from gym_rollouts.resource.routing import EnvironmentTable
from gym_rollouts.transport.client import HttpTransport

CHECK = "environments"
_FIX_START = ("start it with NeMo Gym's ng_run as before (ng_run \"+config_paths=[...]\") or fix the URL "
              "(resource.params.url / resource.params.head_url / environments.<agent>)")


def _fail(summary: str, evidence: str = "", fix: str | None = _FIX_START, server: str | None = None) -> Finding:
    return Finding(CHECK, Status.FAIL, summary, evidence, fix, server)


async def check_environments(cfg: CollectConfig, rows: list[tuple[int, Any, Any]],
                             transport: HttpTransport) -> list[Finding]:
    try:
        table = EnvironmentTable(cfg)
    except ConfigError as exc:
        return [_fail("the environments cannot be configured", str(exc), fix="fix the setting the message names")]
    try:
        await table.open(ResourceContext(transport, cfg.router, cfg.transport))
        return _findings(cfg, table, rows)
    except StartupError as exc:
        return [_fail("an environment of the run is not usable", str(exc))]
    finally:
        await table.close()


def _findings(cfg: CollectConfig, table: EnvironmentTable, rows: list[tuple[int, Any, Any]]) -> list[Finding]:
    out: list[Finding] = []
    if table.head is not None:
        head = table.head
        kinds = sorted(f"{a.name} ({a.impl})" for a in head.agents.values() if a.impl != SIMPLE_AGENT)
        runnable = sorted(a.name for a in head.agents.values() if a.impl == SIMPLE_AGENT)
        evidence = f"runnable agents: {', '.join(runnable) or 'none'}"
        if kinds:
            evidence += f"; agents we do not run (not NeMo Gym's simple_agent): {', '.join(kinds)}"
        out.append(Finding(CHECK, Status.PASS if runnable else Status.WARN,
                           f"NeMo Gym head server {head.url} lists {len(head.agents)} agent(s)", evidence,
                           None if runnable else "start environments with simple_agent agents, or map the rows' "
                                                 "agents with environments.<agent>=<url>", head.url))
    for resource in table.resources():
        broken = table.broken_reason(resource)
        if broken:
            out.append(_fail(f"{resource.describe()} is not reachable", broken))
            continue
        tools = resource.served_tools()
        if tools is None:
            out.append(Finding(CHECK, Status.WARN, f"{resource.describe()} is up but does not say which tools it serves",
                               "no /openapi.json: rows' tools cannot be checked against it before a run",
                               "nothing to do if its rows' tools are right; NeMo Gym (FastAPI) servers publish it"))
        else:
            out.append(Finding(CHECK, Status.PASS, f"{resource.describe()} is up",
                               f"serves tools: {', '.join(sorted(tools)) or 'none (verify only)'}"))
    for line_no, row, problem in rows:
        if row is None:
            continue
        problem = table.row_problem(materialize(row, cfg.responses_create_params, table.default_agent))
        if problem:
            out.append(_fail(f"input line {line_no} cannot run", problem,
                             fix="route the row's agent to its environment (README: Bring your NeMo Gym environments)"))
    return out
