"""The worker pool: exactly ``num_samples_in_parallel`` workers pull jobs from a bounded queue.

With an admission gate (``num_samples_in_parallel: auto``, or ``router.max_rollouts_per_server``:
engine/admission_gate.py) the pool has enough workers for every server at its ceiling, and each
worker waits on the gate before taking its next job, so the live rollouts follow the servers'
admission limits; without one (a fixed number) nothing changes.

A producer moves jobs from the (blocking) job iterator into the queue in batches, on one reader
thread, so memory is O(concurrency), not O(rows). Each worker runs one rollout at a time under a
per-rollout guard: an attempt that raises is recorded in the failures file and retried up to
``max_attempts`` (counted across runs), then the rollout is counted as failed; the run goes on.
A failure that would repeat exactly (the row's own request refused: engine/attempts.py) is
recorded once as terminal and not retried.

Stopping (``StopControl``): the producer and idle workers stop at once; busy workers get the
grace period to finish, then are cancelled. An attempt cancelled, or failing, after the stop was
requested is not recorded (it was not the rollout's fault: e.g. Ctrl-C also stopped the
servers), so resume simply runs it again.

Weight versions (engine/weight_versions.py): a run of a rollout whose model calls spanned
weight versions is written flagged (``keep``), dropped (``drop``: no row, counted, done) or run
again from scratch under the same attempt number (``redo``, at most ``weights.max_redos`` times).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import traceback
from dataclasses import dataclass
from typing import Any, Iterator

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.agent.loop import RolloutOutcome, request_params, run_rollout
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.config.secrets import mask_secrets
from gym_rollouts.engine.admission_gate import AdmissionGate
from gym_rollouts.engine.attempts import TERMINAL, fails_the_same_way_again
from gym_rollouts.engine.metrics import Aggregator
from gym_rollouts.engine.shutdown import StopControl
from gym_rollouts.engine.stats import RunStats
from gym_rollouts.engine.weight_versions import DROP, REDO, provenance, straddles, verdict
from gym_rollouts.errors import GymRolloutsError, ToolSupportError
from gym_rollouts.io.sink import RowBuffer
from gym_rollouts.io.source import Job, materialized_row
from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX
from gym_rollouts.resource.routing import EnvironmentTable

log = logging.getLogger(__name__)

ROWS, FAILURES = "rows", "failures"
# Errors that say the fleet is misconfigured, not that one rollout went wrong: they stop the run
# (not recorded as attempts, so a resume after the fix starts those rollouts afresh).
FATAL_ERRORS = (ToolSupportError,)


@dataclass
class EngineParts:
    cfg: CollectConfig
    policy: VLLMPolicy
    environments: EnvironmentTable  # agent name -> resource (rows were checked against it)
    sink: RowBuffer
    stats: RunStats
    aggregator: Aggregator
    stop: StopControl
    workers: int = 0  # 0: num_samples_in_parallel
    sink_backlog_max: int = 256  # batches handed to the writer and not yet written
    gate: AdmissionGate | None = None  # admission (engine/admission_gate.py); None: no gate


def output_row(job: Job, outcome: RolloutOutcome, *, attempt: int, servers: list[str],
               weight_versions: list[str | None] | None = None) -> dict[str, Any]:
    row = dict(job.row)
    row.update(outcome.verifier_extras)
    row["response"] = outcome.response
    row["reward"] = outcome.reward
    row[TASK_INDEX] = job.task_index
    row[ROLLOUT_INDEX] = job.rollout_index
    row[EXTRAS] = {"agent_name": job.row["agent_ref"]["name"], "stop_reason": outcome.stop_reason,
                   "attempt": attempt, "model_calls": outcome.model_calls, "tool_calls": outcome.tool_calls,
                   "servers": sorted(set(servers)), "seq": job.seq, "task_size": job.task_size}
    if weight_versions is not None:  # every call's server and weight version, and the straddle flag
        row[EXTRAS].update(provenance(servers, weight_versions))
    return row


def failure_row(job: Job, exc: BaseException, attempt: int, server: str | None) -> dict[str, Any]:
    """One failed attempt; its texts (message, traceback: they may quote a server's error body
    that echoes the request's credentials) with every secret masked (config/secrets.py)."""
    return {
        TASK_INDEX: job.task_index, ROLLOUT_INDEX: job.rollout_index, "seq": job.seq, "attempt": attempt,
        "error_class": type(exc).__name__, "_ng_failure_class": type(exc).__name__,
        "message": mask_secrets(str(exc))[:2000], "server": server,
        "retryable": bool(getattr(exc, "retryable", False)),
        "input_line": job.line_no, "agent_ref": job.row.get("agent_ref"),
        "environment": getattr(exc, "environment", None), "call": getattr(exc, "call", None),
        "traceback": None if isinstance(exc, GymRolloutsError)
        else mask_secrets(traceback.format_exc(limit=8))[-4000:],
    }


async def run_one(parts: EngineParts, job: Job, first_attempt: int = 1) -> None:
    cfg, stats = parts.cfg, parts.stats
    params: dict[str, Any] | None = None
    route = parts.environments.resource_of(job.row)
    resource = route.resource
    agent_cfg = cfg.agent if route.max_steps is None else dataclasses.replace(cfg.agent, max_steps=route.max_steps)
    attempt, redos, again = first_attempt - 1, 0, False  # again: a redo (same attempt number)
    while again or attempt < cfg.max_attempts:
        if not again:
            attempt += 1
            if attempt > first_attempt:
                stats.attempt_retries += 1
        again = False
        session = parts.policy.session(group=f"{job.row.get('agent_ref')}/{job.task_index}")  # router group
        try:
            if params is None:  # inside the guard: resource.tools() is resource code
                params = request_params(job.row, resource)  # rows are materialized
            outcome = await run_rollout(materialized_row(job), params=params, resource=resource, session=session,
                                        cfg=agent_cfg, model_name=parts.policy.model_name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the one broad catch: one bad rollout never stops the run
            if isinstance(exc, FATAL_ERRORS):  # every rollout would fail the same way: stop the run
                parts.stop.fail(exc)
                return
            if parts.stop.requested:
                log.debug("seq %s: attempt %s failed during shutdown (not recorded): %s", job.seq, attempt, exc)
                return
            stats.failed_attempts += 1
            server = getattr(exc, "server", None) or (session.servers[-1] if session.servers else None)
            failure = failure_row(job, exc, attempt, server)
            terminal = fails_the_same_way_again(exc, answered_model_calls=len(session.servers))
            if terminal:  # recorded once; the rollout is failed for good (engine/attempts.py)
                failure[TERMINAL] = True
            parts.sink.put(FAILURES, failure)
            log.debug("task %s rollout %s attempt %s failed: %s", job.task_index, job.rollout_index, attempt, exc)
            if terminal:
                break
            continue
        finally:
            session.close()
        versions = session.weight_versions
        decided = verdict(cfg.weights.on_version_change, straddles(versions), redos, cfg.weights.max_redos)
        if decided == REDO:
            if parts.stop.requested:
                return  # not recorded: resume runs it again
            redos += 1
            stats.redone_straddled += 1
            again = True
            log.debug("seq %s: its model calls spanned weight versions %s: run again", job.seq, versions)
            continue
        if decided == DROP:
            stats.dropped_straddled += 1
            return
        row = output_row(job, outcome, attempt=attempt, servers=session.servers, weight_versions=versions)
        if row[EXTRAS]["weight_versions_straddled"]:
            stats.straddled += 1
        if cfg.model.return_token_id_information and cfg.model.check_token_continuity:
            row[EXTRAS]["token_continuity"] = session.continuity.summary()
        parts.sink.put(ROWS, row)
        stats.record(outcome.response["usage"], outcome.stop_reason)
        parts.aggregator.add(row, job.task_size)
        if parts.sink.backlog > parts.sink_backlog_max:
            await _drain(parts)
        return
    stats.failed += 1
    parts.aggregator.add_failure(job.row["agent_ref"]["name"], job.task_index, job.task_size)


async def _drain(parts: EngineParts) -> None:
    """Backpressure: wait while the writer is far behind (a slow disk must not grow memory)."""
    while parts.sink.backlog > parts.sink_backlog_max // 2 and not parts.stop.forced:
        await asyncio.sleep(0.01)


async def run_pool(parts: EngineParts, jobs: Iterator[tuple[Job, int]]) -> bool:
    """Run every (job, first attempt) with exactly ``num_samples_in_parallel`` workers.
    Returns True when the job stream was exhausted and every job taken from it ran to its end
    (a stop arriving after that does not make a complete run interrupted); False when stopped early
    (a job cut short by a stop, or left unstarted, is run again on resume)."""
    workers = parts.workers or parts.cfg.num_samples_in_parallel or 1
    assert isinstance(workers, int), "num_samples_in_parallel=auto needs EngineParts.workers (session.concurrency_of)"
    gate = getattr(parts, "gate", None)  # duck-typed parts (tests) have none
    queue: asyncio.Queue[tuple[Job, int] | None] = asyncio.Queue(maxsize=workers * 2)
    busy = [False] * workers
    reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gym-rollouts-reader")
    batch_size = max(16, workers)
    exhausted, taken, ran = False, 0, 0

    async def produce() -> None:
        nonlocal exhausted, taken
        while not parts.stop.requested:
            batch, at_end = await asyncio.wrap_future(reader.submit(_take, jobs, batch_size, parts.stop))
            taken += len(batch)
            for item in batch:
                await queue.put(item)
            if at_end:
                exhausted = True
                break
            if len(batch) < batch_size:
                break
        for _ in range(workers):
            await queue.put(None)

    async def work(index: int) -> None:
        nonlocal ran
        while not parts.stop.requested:
            if gate is not None:
                await gate.acquire()  # idle (not busy) while it waits: a stop cancels it at once
            try:
                item = await queue.get()
                if item is None:
                    return
                busy[index] = True
                parts.stats.in_flight += 1
                try:
                    await run_one(parts, *item)
                    if not parts.stop.requested:  # else it may have given up because of the stop
                        ran += 1
                finally:
                    parts.stats.in_flight -= 1
                    busy[index] = False
            finally:
                if gate is not None:
                    gate.release()

    async def supervise(producer: asyncio.Task[None], tasks: list[asyncio.Task[None]]) -> None:
        await parts.stop.wait()
        producer.cancel()
        for index, task in enumerate(tasks):
            if not busy[index]:
                task.cancel()
        pending = [t for t in tasks if not t.done()]
        if pending:
            all_done = asyncio.ensure_future(asyncio.wait(pending))
            grace = asyncio.ensure_future(parts.stop.wait_forced(parts.cfg.shutdown_grace_s))
            try:
                await asyncio.wait([all_done, grace], return_when=asyncio.FIRST_COMPLETED)
            finally:
                all_done.cancel()
                grace.cancel()
        for task in tasks:
            task.cancel()

    supervisor: asyncio.Task[None] | None = None
    try:
        async with asyncio.TaskGroup() as group:
            producer = group.create_task(produce())
            tasks = [group.create_task(work(i)) for i in range(workers)]
            supervisor = asyncio.create_task(supervise(producer, tasks))
    finally:
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await asyncio.to_thread(reader.shutdown, True)  # the reader thread stops at the stop flag
    return exhausted and ran == taken


def _take(jobs: Iterator[tuple[Job, int]], n: int, stop: StopControl) -> tuple[list[tuple[Job, int]], bool]:
    """Up to ``n`` items, and whether the stream ran out (not counting an end the stop caused:
    the job stream ends early once a stop is requested)."""
    out = []
    for item in jobs:
        out.append(item)
        if len(out) >= n or stop.requested:
            return out, False
    return out, not stop.requested
