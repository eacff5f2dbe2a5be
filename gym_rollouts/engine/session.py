"""One ``collect`` run, from typed config to finished output files (no printing here).

Order: find and scan the input (validate every row, fingerprint it: nothing is sent when a row
is bad, unless ``on_bad_input=skip``), decide fresh / overwrite / resume against the output's run
manifest (refusals happen here, before any server starts), resolve the backend (embedded servers
when no ``policy_base_url``), check the fleet (``/v1/models``), then write the manifest (or, on
resume, repair and read the earlier files), open the sink, run the worker pool, and write the
aggregate metrics when the run completed. Every resource is an async context manager, closed in
reverse order on any exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import orjson

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.startup import FleetInfo, discover_fleet
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.manifest import build_manifest, check_served_model
from gym_rollouts.engine.metrics import Aggregator
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.engine.resume import ResumeState, begin_fresh, load_state, plan_run
from gym_rollouts.engine.runner import FAILURES, ROWS, EngineParts, run_pool
from gym_rollouts.engine.shutdown import StopControl
from gym_rollouts.engine.stats import RunStats
from gym_rollouts.errors import ConfigError, StartupError
from gym_rollouts.io.sink import RowBuffer, Sink
from gym_rollouts.io.source import Job, iter_jobs, materialized_row, raise_if_problems, scan_file
from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX
from gym_rollouts.resource.base import load_resource
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.sweep.shard import shard_of
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)
MATERIALIZED = "materialized"
MATERIALIZE_BATCH = 256
Tick = Callable[[RunStats], None]
T = TypeVar("T")


@dataclass
class RunResult:
    paths: OutputPaths
    summary: dict[str, Any]
    fleet: FleetInfo | None  # None when stopped before the fleet was checked
    servers: Any = None
    interrupted: bool = False
    started: bool = True  # False: stopped during start-up, before any rollout was sent
    repairs: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return int(self.summary.get("failures") or 0)


def bundled_dataset(name: str) -> Path:
    path = Path(__file__).resolve().parent.parent / "data" / name
    if not path.is_file():
        raise ConfigError(f"bundled example dataset {name!r} not found at {path}")
    return path


def input_path(cfg: CollectConfig) -> Path:
    if cfg.input_jsonl_fpath:
        path = Path(cfg.input_jsonl_fpath).expanduser()
        if not path.is_file():
            raise ConfigError(f"input_jsonl_fpath: file not found: {path}")
        return path
    if not cfg.resource.example_dataset:
        raise ConfigError(f"resource '{cfg.resource.name}' has no example dataset; set input_jsonl_fpath")
    return bundled_dataset(cfg.resource.example_dataset)


def output_paths(cfg: CollectConfig) -> OutputPaths:
    if not cfg.output_jsonl_fpath:
        raise ConfigError("output_jsonl_fpath is not set")
    return OutputPaths(Path(cfg.output_jsonl_fpath).expanduser())


def agent_name_of(cfg: CollectConfig) -> str:
    return cfg.agent_name or f"{cfg.resource.name}_agent"


@contextlib.asynccontextmanager
async def backend(cfg: CollectConfig) -> AsyncIterator[tuple[str, ...]]:
    """The base URLs to use: the configured fleet, or embedded servers started for this run."""
    if not cfg.uses_embedded_backend:
        yield cfg.model.base_url
        return
    from gym_rollouts.embedded import EmbeddedConfig, launch_embedded

    s = cfg.servers
    ecfg = EmbeddedConfig(model_name=s.model_name, max_model_len=s.max_model_len, latency_ms=s.latency_ms,
                          reasoning=s.reasoning, reasoning_parser=s.reasoning_parser)
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(launch_embedded(ecfg, startup_timeout=s.startup_timeout_s))
                 for _ in range(s.num_servers)]
        yield tuple(p.base_url for p in procs)


def planned_jobs(cfg: CollectConfig, source: Path, state: ResumeState, sink: Sink, stats: RunStats,
                 aggregator: Aggregator, stop: StopControl, agent_name: str) -> Iterator[tuple[Job, int]]:
    """(job, first attempt) for every job still to run; runs on the reader thread. Writes the
    materialized inputs past the prefix earlier runs wrote; skips jobs done or out of attempts."""

    def skipped(line_no: int, problem: str) -> None:
        stats.skipped_inputs += 1
        if line_no not in state.recorded_bad_lines:
            sink.put(FAILURES, {"input_line": line_no, "error_class": "InputError", "_ng_failure_class": "InputError",
                                "message": f"{source}:{line_no}: {problem}", "attempt": 0, "seq": None,
                                TASK_INDEX: None, ROLLOUT_INDEX: None, "_ng_failure_terminal": True})

    materialized: list[dict[str, Any]] = []
    for job in iter_jobs(source, limit=cfg.limit, num_repeats=cfg.num_repeats, overrides=cfg.responses_create_params,
                         agent_name=agent_name, on_problem=skipped, keep=shard_of(cfg).owns):
        if stop.requested:
            break
        if job.seq >= state.materialized:
            materialized.append(materialized_row(job))
            if len(materialized) >= MATERIALIZE_BATCH:
                sink.put_many(MATERIALIZED, materialized)
                materialized = []
        if job.seq in state.done:
            continue
        attempts = state.failed_attempts(job.seq)
        if attempts >= cfg.max_attempts:
            stats.prior_failed += 1
            aggregator.add_prior_failure(job.row["agent_ref"]["name"])
            continue
        yield job, attempts + 1
    if materialized:  # a stop leaves the file a shorter prefix: resume writes the rest
        sink.put_many(MATERIALIZED, materialized)


@dataclass
class RunPlan:
    """What a run works on, settled before any server starts (refusals happen while making it)."""

    source: Path
    paths: OutputPaths
    agent_name: str
    total: int
    manifest: dict[str, Any]
    stored: dict[str, Any] | None  # the earlier run's manifest when resuming


async def plan_collection(cfg: CollectConfig) -> RunPlan:
    source, paths, agent_name = input_path(cfg), output_paths(cfg), agent_name_of(cfg)
    scan = await asyncio.to_thread(scan_file, source, cfg.limit, shard_of(cfg).owns)
    if cfg.on_bad_input == "fail":
        raise_if_problems(scan)
    manifest = build_manifest(cfg, scan, agent_name)
    stored = plan_run(cfg, paths, manifest)
    total = scan.owned_rows * cfg.num_repeats  # this shard's part
    return RunPlan(source, paths, agent_name, total, manifest, stored)


async def open_outputs(plan: RunPlan, served_model: str, aggregator: Aggregator) -> ResumeState:
    """Resume: check the model, repair and read the earlier files. Fresh: write the manifest."""
    if plan.stored is None:
        begin_fresh(plan.paths, {**plan.manifest, "served_model": served_model})
        return ResumeState()
    check_served_model(plan.paths.manifest, plan.stored, served_model)
    state = await asyncio.to_thread(load_state, plan.paths, lambda row: aggregator.add(
        row, int((row.get(EXTRAS) or {}).get("task_size") or 1), live=False))
    log.info("resuming %s: %d rows done, %d failed attempts recorded, %d inputs materialized",
             plan.paths.rows, state.done.count, state.prior_failure_rows, state.materialized)
    return state


class StoppedDuringStartup(Exception):
    """A stop (Ctrl-C / SIGTERM) arrived before the first rollout was sent."""


async def unless_stopped(stop: StopControl, step: Awaitable[T]) -> T:
    """``step``'s result, or ``StoppedDuringStartup`` (``step`` cancelled) when a stop comes first:
    start-up steps (server launch, ``/v1/models`` timeouts, resume reads) must not outlast Ctrl-C."""
    if stop.requested:
        if asyncio.iscoroutine(step):
            step.close()
        raise StoppedDuringStartup
    task = asyncio.ensure_future(step)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise StoppedDuringStartup


async def run_collection(cfg: CollectConfig, *, stop: StopControl | None = None, on_tick: Tick | None = None,
                         tick_s: float = 0.5) -> RunResult:
    stop = stop or StopControl()
    plan = await plan_collection(cfg)
    stats, aggregator, resource = RunStats(total=plan.total), Aggregator(), load_resource(cfg.resource)
    async with contextlib.AsyncExitStack() as stack:
        try:
            base_urls = await unless_stopped(stop, stack.enter_async_context(backend(cfg)))
            transport = await stack.enter_async_context(
                HttpTransport(cfg.transport, concurrency=cfg.num_samples_in_parallel, api_key=cfg.model.api_key))
            fleet = await unless_stopped(stop, discover_fleet(transport, base_urls, cfg.model.model))
            dispatcher = await unless_stopped(stop, stack.enter_async_context(
                Dispatcher(fleet.base_urls, transport, cfg.router, cfg.transport)))
            policy = VLLMPolicy(cfg.model, dispatcher, model_name=fleet.model_name, max_model_len=fleet.max_model_len)
            state = await unless_stopped(stop, open_outputs(plan, fleet.model_name, aggregator))
        except StoppedDuringStartup:
            log.info("stopped during start-up (%s): no rollout was sent", stop.reason)
            return RunResult(paths=plan.paths, summary=stats.summary(), fleet=None, interrupted=True, started=False)
        stats.prior_done = state.done.count
        sink = stack.enter_context(Sink({ROWS: plan.paths.rows, FAILURES: plan.paths.failures,
                                         MATERIALIZED: plan.paths.materialized_inputs}))
        buffer = RowBuffer(sink)
        parts = EngineParts(cfg, policy, resource, buffer, stats, aggregator, stop)
        jobs = planned_jobs(cfg, plan.source, state, sink, stats, aggregator, stop, plan.agent_name)
        ticker = asyncio.create_task(_tick(stats, dispatcher, on_tick, tick_s)) if on_tick else None
        stats.start_clock()
        try:
            completed = await run_pool(parts, jobs)
        finally:
            buffer.flush()
            if ticker:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            _refresh(stats, dispatcher)
            servers = stats.servers
            if on_tick:
                on_tick(stats)
        summary = {**stats.summary(), "mean_reward": aggregator.mean("reward")}
        run = {**summary, "model": fleet.model_name, "max_model_len": fleet.max_model_len,
               "router": dispatcher.summary(), "policy": policy.stats()}
    if stop.fatal is not None:
        raise StartupError(f"run stopped: {stop.fatal}. The outputs so far are kept: after fixing this, "
                           f"rerun the same command with resume_from_cache=true "
                           f"output_jsonl_fpath={plan.paths.rows}")
    if completed:
        entries = aggregator.result(run=run, servers=servers)
        await asyncio.to_thread(plan.paths.aggregate_metrics.write_bytes,
                                orjson.dumps(entries, option=orjson.OPT_INDENT_2))
    return RunResult(paths=plan.paths, summary=summary, fleet=fleet, servers=servers, interrupted=not completed,
                     repairs=[str(r) for r in state.repairs])


def request_retries(servers: list[dict[str, Any]]) -> int:
    """Total retried model calls from the router's per-server stats."""
    return sum(int(s.get("retried") or 0) for s in servers)


def _refresh(stats: RunStats, dispatcher: Dispatcher) -> None:
    """Copy the router's per-server stats (and the retries they count) into ``stats``."""
    stats.servers = dispatcher.stats()
    stats.request_retries = request_retries(stats.servers)


async def _tick(stats: RunStats, dispatcher: Dispatcher, on_tick: Tick, every: float) -> None:
    refresh_every = max(1, int(2.0 / every))  # the router's stats cost more than ours: every ~2 s
    n = 0
    while True:
        await asyncio.sleep(every)
        if n % refresh_every == 0:
            _refresh(stats, dispatcher)
        n += 1
        on_tick(stats)
