"""The worker pool: exactly ``num_samples_in_parallel`` workers pull jobs from a bounded queue.

A producer streams jobs from the source into the queue (memory O(concurrency), not O(rows)).
Each worker runs one rollout at a time under a per-rollout guard: a rollout that raises is
retried up to ``max_attempts`` and then recorded as a failure row; the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.agent.loop import RolloutOutcome, request_params, run_rollout
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.stats import RunStats
from gym_rollouts.errors import GymRolloutsError
from gym_rollouts.io.sink import Sink
from gym_rollouts.io.source import Job
from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX
from gym_rollouts.resource.base import Resource

log = logging.getLogger(__name__)

ROWS, FAILURES = "rows", "failures"


@dataclass
class EngineParts:
    cfg: CollectConfig
    policy: VLLMPolicy
    resource: Resource
    sink: Sink
    stats: RunStats
    agent_name: str


def output_row(job: Job, outcome: RolloutOutcome, *, agent_name: str, attempt: int,
               extras: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(job.row)
    row.update(outcome.verifier_extras)
    row["response"] = outcome.response
    row["reward"] = outcome.reward
    row[TASK_INDEX] = job.task_index
    row[ROLLOUT_INDEX] = job.rollout_index
    row[EXTRAS] = {"agent_name": agent_name, "stop_reason": outcome.stop_reason, "attempt": attempt,
                   "model_calls": outcome.model_calls, "tool_calls": outcome.tool_calls, **extras}
    return row


def failure_row(job: Job, exc: BaseException, attempt: int, server: str | None) -> dict[str, Any]:
    return {
        TASK_INDEX: job.task_index, ROLLOUT_INDEX: job.rollout_index, "attempt": attempt,
        "error_class": type(exc).__name__, "message": str(exc)[:2000], "server": server,
        "retryable": bool(getattr(exc, "retryable", False)), "input_line": job.line_no,
        "traceback": None if isinstance(exc, GymRolloutsError) else traceback.format_exc(limit=8)[-4000:],
    }


async def run_one(parts: EngineParts, job: Job, first_attempt: int = 1) -> None:
    cfg = parts.cfg
    params = request_params(job.row, cfg.responses_create_params, parts.resource)
    for attempt in range(first_attempt, cfg.max_attempts + 1):
        session = parts.policy.session()
        try:
            outcome = await run_rollout(job.row, params=params, resource=parts.resource, session=session,
                                        cfg=cfg.agent, model_name=parts.policy.model_name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the one broad catch: one bad rollout never stops the run
            parts.stats.failed_attempts += 1
            server = getattr(exc, "server", None) or (session.servers[-1] if session.servers else None)
            parts.sink.put(FAILURES, failure_row(job, exc, attempt, server))
            log.debug("task %s rollout %s attempt %s failed: %s", job.task_index, job.rollout_index, attempt, exc)
            continue
        finally:
            session.close()
        extras: dict[str, Any] = {"servers": sorted(set(session.servers))}
        if parts.policy.cfg.return_token_id_information and parts.policy.cfg.check_token_continuity:
            extras["token_continuity"] = session.continuity.summary()
        parts.stats.record(outcome.reward, outcome.response["usage"], outcome.stop_reason)
        parts.sink.put(ROWS, output_row(job, outcome, agent_name=parts.agent_name, attempt=attempt, extras=extras))
        return
    parts.stats.failed += 1


async def run_pool(parts: EngineParts, jobs: Iterator[Job], *,
                   first_attempt: Callable[[Job], int] = lambda job: 1) -> None:
    """Run every job with exactly ``num_samples_in_parallel`` workers."""
    workers = parts.cfg.num_samples_in_parallel
    queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=workers * 2)

    async def produce() -> None:
        batch_size = max(16, workers)
        iterator = iter(jobs)
        while True:
            batch = await asyncio.to_thread(_take, iterator, batch_size)
            for job in batch:
                await queue.put(job)
            if len(batch) < batch_size:
                break
        for _ in range(workers):
            await queue.put(None)

    async def work() -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            parts.stats.in_flight += 1
            try:
                await run_one(parts, job, first_attempt(job))
            finally:
                parts.stats.in_flight -= 1

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        for _ in range(workers):
            group.create_task(work())


def _take(iterator: Iterator[Job], n: int) -> list[Job]:
    out = []
    for job in iterator:
        out.append(job)
        if len(out) >= n:
            break
    return out
