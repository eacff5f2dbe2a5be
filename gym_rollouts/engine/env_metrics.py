"""The environments' own aggregate metrics: NeMo Gym's ``/aggregate_metrics``, asked after a run.

NeMo Gym computes each agent's metrics by posting its finished rows to the agent's resources
server (``POST /aggregate_metrics {"verify_responses": [...]}``); many environments add
benchmark-specific figures there and choose their headline ``key_metrics``. So that a NeMo Gym
environment's metrics file says what it said under NeMo Gym, the engine asks every remote
environment the same question, with the rows stripped as NeMo Gym strips them (no ``response``
but its ``usage``, no ``responses_create_params``; our ``_gr`` extras dropped too), and the
metrics writer merges the answer into that agent's entry. Rows are read back from the output
file, so memory is O(rows of one remote agent) for the duration of the call, as in NeMo Gym. A
failed call is reported in a notice and our own metrics stand alone.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

from gym_rollouts.errors import GymRolloutsError
from gym_rollouts.io.jsonl import iter_json_lines
from gym_rollouts.records import EXTRAS
from gym_rollouts.resource.nemo_gym import NemoGymEnvironment
from gym_rollouts.resource.routing import EnvironmentTable

log = logging.getLogger(__name__)
_STRIPPED = frozenset({"response", "responses_create_params", EXTRAS})


def stripped(row: dict[str, Any]) -> dict[str, Any]:
    """A finished row as NeMo Gym sends it to ``/aggregate_metrics``."""
    entry = {k: v for k, v in row.items() if k not in _STRIPPED}
    response = row.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if usage:
        entry["response"] = {"usage": usage}
    return entry


def _rows_by_agent(path: Path, agents: set[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for _line, row in iter_json_lines(path):
        ref = row.get("agent_ref")
        name = ref.get("name") if isinstance(ref, dict) else None
        if name in agents:
            found.setdefault(name, []).append(stripped(row))
    return found


async def environment_metrics(rows_path: Path, table: EnvironmentTable,
                              notify: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """agent name -> the ``/aggregate_metrics`` answer of its remote environment (agents whose
    environment failed to answer are left out, with a notice)."""
    remote = {agent: env for agent, env in table.agents_by_resource().items() if isinstance(env, NemoGymEnvironment)}
    if not remote:
        return {}
    rows = await asyncio.to_thread(_rows_by_agent, rows_path, set(remote))
    out: dict[str, dict[str, Any]] = {}
    for agent, agent_rows in sorted(rows.items()):
        env = remote[agent]
        try:
            out[agent] = await env.aggregate_metrics(agent_rows)
        except GymRolloutsError as exc:
            text = (f"{env.describe()} could not compute agent {agent}'s aggregate metrics ({exc}); its "
                    f"environment-specific metrics are missing from the metrics file (ours are there)")
            log.warning("%s", text)
            if notify is not None:
                notify(text)
    return out
