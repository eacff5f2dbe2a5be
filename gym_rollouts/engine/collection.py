"""The one collection engine: long-lived parts opened once, and any number of runs on them.

``CollectionSession`` owns what outlives a run: the environments' transport and table, the
backend (embedded servers when no ``policy_base_url``), the model transport (its pooled
connections), fleet discovery, the ``Dispatcher`` (router state: affinity, health, latency,
admission gate) and the ``VLLMPolicy``. They open lazily, in the order a ``collect`` run needs
(environments before the input scan, the fleet after it, so a bad input is refused before any
server starts), or eagerly with ``open()`` (the Python API's ``Collector``). ``run(cfg)`` is one
run: the output's lock (when the run has an output), the scan and resume plan, the sink, the
worker pool, the aggregate metrics (engine/session.py holds those pieces); the rows it produces
may also go to an ``Outlet`` (the API's stream to the caller). ``collect`` is one session with one
run (engine/session.py ``run_collection``); a training loop keeps one session and runs once per
step: no second fleet discovery, the same connections and router state.

A run without output (``output_jsonl_fpath`` null) writes no file: its rows go only to the outlet,
its failure rows are kept in memory (``RunResult.failure_rows``, the first ``MAX_FAILURE_ROWS``),
no manifest, no resume, no aggregate metrics file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, Callable, Iterator, Protocol

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.startup import FleetInfo, discover_fleet, join_check
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.admission_gate import AdmissionGate, admission_gate
from gym_rollouts.engine.env_metrics import environment_metrics
from gym_rollouts.engine.generated_inputs import generates_inputs
from gym_rollouts.engine.metrics import Aggregator
from gym_rollouts.engine.runner import FAILURES, ROWS, EngineParts, run_pool
from gym_rollouts.engine.session import (RunPlan, RunResult, StoppedDuringStartup, Tick, _refresh, _tick, backend,
                                         claimed_output, concurrency_of, environment_transport_cfg, input_path,
                                         open_outputs, output_paths, output_sink, plan_collection, planned_jobs,
                                         stopped_error, unless_stopped)
from gym_rollouts.engine.shutdown import StopControl
from gym_rollouts.engine.stats import RunStats
from gym_rollouts.io.sink import RowBuffer
from gym_rollouts.resource.base import ResourceContext
from gym_rollouts.resource.routing import EnvironmentTable
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.router.pause import PauseControl, open_pause
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)
MAX_FAILURE_ROWS = 1000
OPEN_CONCURRENCY = 1024  # connection pool of a session opened before any run (num_samples_in_parallel null)


class Outlet(Protocol):
    """Where a run's output rows go besides the files: ``put`` (from the event loop) each row as it
    is written; ``backlog`` (rows not yet taken) holds the workers back like a slow disk does."""

    @property
    def backlog(self) -> int: ...

    def put(self, row: dict[str, Any]) -> None: ...


class FailureLog:
    """The first ``MAX_FAILURE_ROWS`` failure rows of a run (thread-safe: the reader thread adds
    skipped inputs), and how many there were."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._lock = threading.Lock()

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.count += 1
            if len(self.rows) < MAX_FAILURE_ROWS:
                self.rows.append(row)


class TeeBuffer:
    """What the workers write to: the output files' ``RowBuffer`` (None: no output), the run's
    failure log, and the caller's ``Outlet``. ``backlog`` is the larger of the writer's and the
    outlet's, so the runner's backpressure (runner.py ``_drain``) waits for either."""

    def __init__(self, files: RowBuffer | None, failures: FailureLog, outlet: Outlet | None) -> None:
        self.files = files
        self.failures = failures
        self.outlet = outlet

    @property
    def backlog(self) -> int:
        return max(self.files.backlog if self.files is not None else 0,
                   self.outlet.backlog if self.outlet is not None else 0)

    def put(self, channel: str, row: dict[str, Any]) -> None:
        if self.files is not None:
            self.files.put(channel, row)
        if channel == FAILURES:
            self.failures.add(row)
        elif channel == ROWS and self.outlet is not None:
            self.outlet.put(row)

    def put_many(self, channel: str, rows: list[dict[str, Any]]) -> None:  # the reader thread's side
        if channel == FAILURES:
            for row in rows:
                self.failures.add(row)

    def flush(self) -> None:
        if self.files is not None:
            self.files.flush()


class _ReaderSink:
    """The reader thread's sink (engine/session.py ``planned_jobs``): the output files' ``Sink``
    (None: no output; materialized inputs are then dropped), and failure rows of skipped input
    lines to the failure log too."""

    def __init__(self, files: Any, tee: TeeBuffer) -> None:
        self._files = files
        self._tee = tee

    def put(self, channel: str, row: dict[str, Any]) -> None:
        self.put_many(channel, [row])

    def put_many(self, channel: str, rows: list[dict[str, Any]]) -> None:
        if self._files is not None:
            self._files.put_many(channel, rows)
        self._tee.put_many(channel, rows)


class CollectionSession:
    """Async context manager (see module doc). ``notify`` receives each one-line notice for the
    user once per session (what the environments could not check, NeMo Gym settings not applied)."""

    def __init__(self, cfg: CollectConfig, *, notify: Callable[[str], None] | None = None,
                 pause: PauseControl | None = None) -> None:
        self.cfg = cfg
        self.notify = notify
        self.pause = pause  # router/pause.py: completed from cfg.weights (or made) as the fleet opens
        self.table: EnvironmentTable | None = None
        self.fleet: FleetInfo | None = None
        self.base_urls: tuple[str, ...] = ()
        self.transport: HttpTransport | None = None
        self.dispatcher: Dispatcher | None = None
        self.policy: VLLMPolicy | None = None
        self.gate: AdmissionGate | None = None
        self.discoveries = 0  # fleet discoveries (/v1/models rounds): one per session
        self._stack = contextlib.AsyncExitStack()
        self._run_stop: StopControl | None = None  # the run in progress: the dead-fleet fuse stops it
        self._notified: set[str] = set()

    async def __aenter__(self) -> "CollectionSession":
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._stack.__aexit__(*exc)

    async def open(self, stop: StopControl | None = None) -> None:
        """Open every long-lived part now (environments, backend, fleet, router)."""
        stop = stop or StopControl()
        await self.open_environments(stop)
        await self.open_fleet(stop, concurrency_of(self.cfg, OPEN_CONCURRENCY))

    async def open_environments(self, stop: StopControl) -> EnvironmentTable:
        if self.table is not None:
            return self.table
        cfg = self.cfg
        env_transport = await self._stack.enter_async_context(HttpTransport(
            environment_transport_cfg(cfg), concurrency=concurrency_of(cfg, 1024)))
        table = EnvironmentTable(cfg)
        self._stack.push_async_callback(table.close)
        await unless_stopped(stop, table.open(ResourceContext(env_transport, cfg.router, cfg.transport)))
        self.table = table
        return table

    async def open_fleet(self, stop: StopControl, workers: int) -> None:
        """Backend, model transport (``workers`` connections), fleet check, router, policy."""
        if self.policy is not None:
            return
        cfg, stack = self.cfg, self._stack
        self.base_urls = await unless_stopped(stop, stack.enter_async_context(backend(cfg)))
        transport = await stack.enter_async_context(
            HttpTransport(cfg.transport, concurrency=workers, api_key=cfg.model.api_key))
        self.transport = transport
        self.discoveries += 1
        fleet = await unless_stopped(stop, discover_fleet(transport, self.base_urls, cfg.model.model, allow_down=True))
        joins = join_check(transport, fleet.model_name, fleet.max_model_len, cfg.router.health_timeout_s)
        up = tuple(u for u in fleet.base_urls if u not in fleet.down)  # weights.* settings, server versions read
        self.pause = await unless_stopped(stop, open_pause(cfg.weights, transport, up, self.pause))  # router/pause.py
        dispatcher = await unless_stopped(stop, stack.enter_async_context(  # the fuse: stop.fail -> exit 4
            Dispatcher(fleet.base_urls, transport, cfg.router, cfg.transport, vllm_servers=True,
                       on_fleet_dead=self._fleet_dead, join_check=joins, absent=fleet.down, pause=self.pause)))
        self.gate = admission_gate(cfg, dispatcher, self._notify)  # None: a fixed number without a per-server cap
        self.fleet, self.dispatcher = fleet, dispatcher
        self.policy = VLLMPolicy(cfg.model, dispatcher, model_name=fleet.model_name, max_model_len=fleet.max_model_len)

    def _fleet_dead(self, exc: BaseException) -> None:
        if self._run_stop is not None:
            self._run_stop.fail(exc)

    def _notify(self, notice: str) -> None:
        if notice in self._notified:
            return
        self._notified.add(notice)
        if self.notify is not None:
            self.notify(notice)
        log.info("%s", notice)

    async def run(self, cfg: CollectConfig, *, stop: StopControl | None = None, on_tick: Tick | None = None,
                  tick_s: float = 0.5, outlet: Outlet | None = None) -> RunResult:
        """One run of ``cfg`` (this session's config with the run's input, output, resume,
        ``num_repeats``, ``limit``) on this session's parts; see module doc."""
        stop = stop or StopControl()
        if self.dispatcher is not None and self.dispatcher.fleet_dead is not None:
            raise stopped_error(self.dispatcher.fleet_dead, None)
        self._run_stop = stop
        try:
            return await self._run(cfg, stop, on_tick, tick_s, outlet)
        finally:
            self._run_stop = None

    async def _run(self, cfg: CollectConfig, stop: StopControl, on_tick: Tick | None, tick_s: float,
                   outlet: Outlet | None) -> RunResult:
        has_output = bool(cfg.output_jsonl_fpath)
        async with contextlib.AsyncExitStack() as stack:
            if has_output:
                stack.enter_context(claimed_output(cfg))  # input readable, output usable and ours alone
            elif not generates_inputs(cfg):
                input_path(cfg)
            try:
                table = await self.open_environments(stop)
                plan = await unless_stopped(stop, plan_collection(cfg, table))
            except StoppedDuringStartup:
                return self._stopped_early(cfg, stop, None, RunStats())
            if cfg.num_samples_in_parallel is None:
                table.notices.append(f"num_samples_in_parallel=null: all {plan.total} rollouts run at once (as in "
                                     f"NeMo Gym); set a number to bound the concurrency and memory")
            for notice in dict.fromkeys(table.notices):
                self._notify(notice)
            stats, workers = RunStats(total=plan.total), concurrency_of(cfg, plan.total)
            aggregator = Aggregator(spool_dir=plan.paths.rows.parent if plan.paths else None)
            stack.callback(aggregator.close)  # the spool goes on every exit (written or not)
            try:
                await self.open_fleet(stop, workers)
                assert self.fleet is not None and self.policy is not None and self.dispatcher is not None
                state = await unless_stopped(stop, open_outputs(plan, self.fleet.model_name, aggregator))
            except StoppedDuringStartup:
                return self._stopped_early(cfg, stop, plan, stats)
            stats.prior_done = state.done.count
            failures = FailureLog()
            tee = TeeBuffer(None, failures, outlet)
            sink = stack.enter_context(output_sink(plan, stop)) if has_output else None
            if sink is not None:
                tee.files = RowBuffer(sink)
            parts = EngineParts(cfg, self.policy, table, tee, stats, aggregator, stop,  # type: ignore[arg-type]
                                workers=workers, gate=self.gate)
            reader_sink: Any = _ReaderSink(sink, tee)
            jobs = planned_jobs(cfg, plan, state, reader_sink, stats, aggregator, stop)
            completed, servers = await self._pool(parts, jobs, on_tick, tick_s)
            fleet, dispatcher, policy = self.fleet, self.dispatcher, self.policy
            summary = {**stats.summary(), "mean_reward": aggregator.mean("reward")}
            run = {**summary, "model": fleet.model_name, "max_model_len": fleet.max_model_len,
                   "router": dispatcher.summary(), "policy": policy.stats()}
            environments = table.stats()
            if environments:
                run["environments"] = environments
            metrics_written = has_output and completed and stop.fatal is None and not cfg.disable_aggregation
            if metrics_written:  # environments still open: they are asked for their own metrics
                assert plan.paths is not None and sink is not None
                tee.flush()
                await asyncio.to_thread(sink.close)  # every row on disk: the environments' metrics read them back
                theirs = await environment_metrics(plan.paths.rows, table, self.notify)
                await asyncio.to_thread(aggregator.write, plan.paths.aggregate_metrics, run=run, servers=servers,
                                        environment=theirs)
        if stop.fatal is not None:
            raise stopped_error(stop.fatal, plan.paths)
        return RunResult(paths=plan.paths, summary=summary, fleet=fleet, servers=servers, interrupted=not completed,
                         repairs=[str(r) for r in state.repairs], metrics_written=metrics_written,
                         failure_rows=failures.rows)

    async def _pool(self, parts: EngineParts, jobs: Iterator[Any], on_tick: Tick | None,
                    tick_s: float) -> tuple[bool, Any]:
        """The worker pool with the progress ticker; (completed, the router's per-server stats)."""
        stats, dispatcher = parts.stats, self.dispatcher
        assert dispatcher is not None
        ticker = asyncio.create_task(_tick(stats, dispatcher, on_tick, tick_s)) if on_tick else None
        stats.start_clock()
        dispatcher.count_unstarted(lambda: stats.unstarted)  # the router's rules for the run's tail
        try:
            completed = await run_pool(parts, jobs)
        finally:
            dispatcher.count_unstarted(None)
            stats.stop_clock()  # the final tick and the summary read the same rates (engine/stats.py)
            parts.sink.flush()
            if ticker:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            _refresh(stats, dispatcher)
            if on_tick:
                on_tick(stats)
        return completed, stats.servers

    @staticmethod
    def _stopped_early(cfg: CollectConfig, stop: StopControl, plan: RunPlan | None, stats: RunStats) -> RunResult:
        log.info("stopped during start-up (%s): no rollout was sent", stop.reason)
        if plan is not None:
            paths = plan.paths
        else:
            paths = output_paths(cfg) if cfg.output_jsonl_fpath else None
        return RunResult(paths=paths, summary=stats.summary(), fleet=None, interrupted=True, started=False)
