"""One ``collect`` run, from typed config to finished output files (no printing here).

Order: resolve the backend (the embedded server when no ``policy_base_url``), check the fleet
(``/v1/models``), validate the input, open the sink, run the worker pool, write aggregate
metrics. Every resource is an async context manager, closed in reverse order on any exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import orjson

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.startup import FleetInfo, discover_fleet
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.engine.runner import FAILURES, ROWS, EngineParts, run_pool
from gym_rollouts.engine.stats import RunStats
from gym_rollouts.errors import ConfigError
from gym_rollouts.io.sink import Sink
from gym_rollouts.io.source import iter_jobs, raise_if_problems, validate_file
from gym_rollouts.records import ROLLOUT_INDEX, TASK_INDEX
from gym_rollouts.resource.base import load_resource
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)
MATERIALIZED = "materialized"


@dataclass
class RunResult:
    paths: OutputPaths
    summary: dict[str, Any]
    fleet: FleetInfo
    servers: list[dict[str, Any]] = field(default_factory=list)

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


def prepare_outputs(cfg: CollectConfig) -> OutputPaths:
    if not cfg.output_jsonl_fpath:
        raise ConfigError("output_jsonl_fpath is not set")
    paths = OutputPaths(Path(cfg.output_jsonl_fpath).expanduser())
    existing = paths.existing()
    if existing and not cfg.resume_from_cache:
        if not cfg.overwrite:
            raise ConfigError(
                f"{existing[0]} already exists. Pass resume_from_cache=true to continue that run, "
                f"overwrite=true to start clean, or choose another output_jsonl_fpath."
            )
        for path in existing:
            path.unlink()
        log.warning("overwrite=true: removed previous outputs %s", ", ".join(map(str, existing)))
    return paths


@contextlib.asynccontextmanager
async def backend(cfg: CollectConfig) -> AsyncIterator[tuple[str, ...]]:
    """The base URLs to use: the configured fleet, or embedded servers started for this run."""
    if not cfg.uses_embedded_backend:
        yield cfg.model.base_url
        return
    from gym_rollouts.embedded.launch import launch_embedded
    from gym_rollouts.embedded.server import EmbeddedConfig

    s = cfg.servers
    ecfg = EmbeddedConfig(model_name=s.model_name, max_model_len=s.max_model_len, latency_ms=s.latency_ms,
                          reasoning=s.reasoning, reasoning_parser=s.reasoning_parser)
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(launch_embedded(ecfg, startup_timeout=s.startup_timeout_s))
                 for _ in range(s.num_servers)]
        yield tuple(p.base_url for p in procs)


async def run_collection(cfg: CollectConfig, *, on_tick: Callable[[RunStats, Any], None] | None = None,
                         tick_s: float = 0.5) -> RunResult:
    source = input_path(cfg)
    paths = prepare_outputs(cfg)
    stats = RunStats()
    problems: list[str] = []
    if cfg.on_bad_input == "fail":
        count, problems = await asyncio.to_thread(validate_file, source, cfg.limit)
        raise_if_problems(source, problems)
        stats.total = count * cfg.num_repeats
    resource = load_resource(cfg.resource)
    agent_name = cfg.agent_name or f"{cfg.resource.name}_agent"
    async with contextlib.AsyncExitStack() as stack:
        base_urls = await stack.enter_async_context(backend(cfg))
        transport = await stack.enter_async_context(
            HttpTransport(cfg.transport, concurrency=cfg.num_samples_in_parallel, api_key=cfg.model.api_key))
        fleet = await discover_fleet(transport, base_urls, cfg.model.model)
        dispatcher = await stack.enter_async_context(Dispatcher(fleet.base_urls, transport, cfg.router, cfg.transport))
        policy = VLLMPolicy(cfg.model, dispatcher, model_name=fleet.model_name, max_model_len=fleet.max_model_len)
        sink = stack.enter_context(Sink({ROWS: paths.rows, FAILURES: paths.failures,
                                         MATERIALIZED: paths.materialized_inputs}))
        parts = EngineParts(cfg, policy, resource, sink, stats, agent_name)

        def skipped(line_no: int, problem: str) -> None:
            stats.skipped_inputs += 1
            sink.put(FAILURES, {"input_line": line_no, "error_class": "InputError", "message": problem,
                                "attempt": 0, TASK_INDEX: None, ROLLOUT_INDEX: None})

        def jobs():
            for job in iter_jobs(source, limit=cfg.limit, num_repeats=cfg.num_repeats, on_problem=skipped):
                sink.put(MATERIALIZED, {**job.row, TASK_INDEX: job.task_index, ROLLOUT_INDEX: job.rollout_index})
                yield job

        ticker = asyncio.create_task(_tick(stats, dispatcher, on_tick, tick_s)) if on_tick else None
        try:
            await run_pool(parts, jobs())
        finally:
            if ticker:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            if on_tick:
                on_tick(stats, dispatcher)
        summary = stats.summary()
        servers = dispatcher.stats()
    metrics = {"summary": summary, "servers": servers, "model": fleet.model_name,
               "max_model_len": fleet.max_model_len, "finished_at": time.time()}
    paths.aggregate_metrics.write_bytes(orjson.dumps(metrics, option=orjson.OPT_INDENT_2))
    return RunResult(paths=paths, summary=summary, fleet=fleet, servers=servers)


async def _tick(stats: RunStats, dispatcher: Dispatcher, on_tick: Callable[[RunStats, Any], None], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        on_tick(stats, dispatcher)
