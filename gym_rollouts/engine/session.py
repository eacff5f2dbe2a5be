"""One ``collect`` run, from typed config to finished output files (no printing here).

Order: check that the input is a readable file and the output's paths usable, and take the
output's lock (one writer per output, held to the end; engine/output_lock.py), before any server
is contacted; find and scan the input (validate every row, fingerprint it: nothing is sent when a row
is bad, unless ``on_bad_input=skip``), decide fresh / overwrite / resume against the output's run
manifest (refusals happen here, before any server starts), resolve the backend (embedded servers
when no ``policy_base_url``), check the fleet (``/v1/models``), then write the manifest (or, on
resume, repair and read the earlier files), open the sink, run the worker pool, and write the
aggregate metrics when the run completed. Every resource is an async context manager, closed in
reverse order on any exit. File-system problems found before any rollout are ``ConfigError``s (exit
2); a write failing part-way stops the run with ``OutputWriteError`` (exit 5, resumable).

This module holds the pieces; engine/collection.py ``CollectionSession`` runs them in this order
(the one engine under both ``collect`` and the Python API, gym_rollouts/api/). A run without
output (the API's default) skips the lock, manifest, resume and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

from gym_rollouts.adapter.startup import FleetInfo
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.manifest import build_manifest, check_served_model
from gym_rollouts.engine.metrics import Aggregator
from gym_rollouts.engine.output_lock import OutputLock
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.engine.resume import ResumeState, begin_fresh, load_state, plan_run
from gym_rollouts.engine.admission_gate import auto_workers, is_auto
from gym_rollouts.engine.runner import FAILURES, ROWS
from gym_rollouts.engine.shutdown import StopControl
from gym_rollouts.engine.stats import RunStats
from gym_rollouts.errors import ConfigError, InputChangedError, OutputWriteError, RunStopped
from gym_rollouts.io.os_errors import explain, explain_before_resume, find_write_failure
from gym_rollouts.io.sink import Sink, SinkWriteError
from gym_rollouts.engine.generated_inputs import generates_inputs, input_or_generated
from gym_rollouts.engine.inputs import prompt_fingerprint, row_rules
from gym_rollouts.io.source import IndexPlan, Job, RowRules, iter_jobs, materialized_row, raise_if_problems, scan_file
from gym_rollouts.records import EXTRAS, ROLLOUT_INDEX, TASK_INDEX
from gym_rollouts.resource.routing import EnvironmentTable
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.sweep.shard import shard_of

log = logging.getLogger(__name__)
MATERIALIZED = "materialized"
MATERIALIZE_BATCH = 256
Tick = Callable[[RunStats], None]
T = TypeVar("T")


@dataclass
class RunResult:
    """What one run did. ``paths`` is None for a run without output (the Python API's default);
    ``failure_rows``: its first failure rows (one per failed attempt or skipped input line: the
    rows of the failures file), also when they went to a file."""

    paths: OutputPaths | None
    summary: dict[str, Any]
    fleet: FleetInfo | None  # None when stopped before the fleet was checked
    servers: Any = None
    interrupted: bool = False
    started: bool = True  # False: stopped during start-up, before any rollout was sent
    repairs: list[str] = field(default_factory=list)
    metrics_written: bool = False  # False: interrupted, or disable_aggregation, or no output
    failure_rows: list[dict[str, Any]] = field(default_factory=list)

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
        return readable_input(Path(cfg.input_jsonl_fpath).expanduser())
    if not cfg.resource.example_dataset:
        raise ConfigError(f"resource '{cfg.resource.name}' has no example dataset; set input_jsonl_fpath")
    return bundled_dataset(cfg.resource.example_dataset)


def readable_input(path: Path) -> Path:
    """``path`` when it is a regular file this process can read; else a ``ConfigError`` that says
    what is wrong (missing, a directory, under a file, a pipe, unreadable) and what to do."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ConfigError(f"input_jsonl_fpath: file not found: {path}{where}") from None
    except NotADirectoryError:
        above = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise ConfigError(f"input_jsonl_fpath: file not found: {path}: {above} is a file, not a directory") from None
    except OSError as exc:
        raise ConfigError(f"input_jsonl_fpath: cannot read {path}: {explain(exc)}") from None
    if stat.S_ISDIR(mode):
        try:
            inside = sorted(p.name for p in path.glob("*.jsonl"))[:3]
        except OSError:
            inside = []
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise ConfigError(f"input_jsonl_fpath={path} is a directory, not a file: give the path of the JSONL file "
                          f"itself{hint}")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"input_jsonl_fpath={path} is not a regular file (a pipe, device or socket): collect reads "
                          f"its input twice (every row is checked before any is sent), so write it to a file first")
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ConfigError(f"input_jsonl_fpath: cannot read {path}: {explain(exc)}") from None
    return path


def output_paths(cfg: CollectConfig) -> OutputPaths:
    if not cfg.output_jsonl_fpath:
        raise ConfigError("output_jsonl_fpath is not set")
    return OutputPaths(Path(cfg.output_jsonl_fpath).expanduser())


@contextlib.contextmanager
def claimed_output(cfg: CollectConfig) -> Iterator[OutputLock]:
    """Before any server is contacted or any output file touched: the input is a readable file,
    the output's paths are usable, its folder exists, and this process is the output's only writer
    (engine/output_lock.py: held until the run ends, released by the OS on any exit). Each
    problem is a ``ConfigError`` that says what to do (exit 2, nothing sent)."""
    if not generates_inputs(cfg):  # a generated input is written later (engine/generated_inputs.py)
        input_path(cfg)
    paths = output_paths(cfg)
    paths.check_paths()
    paths.create_folder()
    with OutputLock(paths.lock, rows=paths.rows) as lock:
        yield lock


def concurrency_of(cfg: CollectConfig, total: int) -> int:
    """Workers: ``num_samples_in_parallel``, or every rollout at once when it is null (NeMo Gym), or
    with ``auto`` enough for every server at its admission ceiling (engine/admission_gate.py)."""
    if is_auto(cfg):
        return auto_workers(cfg, total)
    return cfg.num_samples_in_parallel if cfg.num_samples_in_parallel is not None else max(1, total)


def environment_transport_cfg(cfg: CollectConfig) -> Any:
    """The environments' transport: the run's settings (retries, keep-alive) with read timeouts
    long enough for every environment (each request is bounded by its environment's timeout_s)."""
    return dataclasses.replace(cfg.transport, read_timeout_s=max(cfg.transport.read_timeout_s, 3600.0))


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


def planned_jobs(cfg: CollectConfig, plan: "RunPlan", state: ResumeState, sink: Sink, stats: RunStats,
                 aggregator: Aggregator, stop: StopControl) -> Iterator[tuple[Job, int]]:
    """(job, first attempt) for every job still to run; runs on the reader thread. Writes the
    materialized inputs past the prefix earlier runs wrote; skips jobs done or out of attempts.
    The input changing under the stream (io/input_snapshot.py) stops the run (``stop.fail``):
    the jobs before the change came from the scanned content, none comes from the changed lines."""
    source = plan.source

    def skipped(line_no: int, problem: str) -> None:
        stats.skipped_inputs += 1
        if line_no not in state.recorded_bad_lines:
            sink.put(FAILURES, {"input_line": line_no, "error_class": "InputError", "_ng_failure_class": "InputError",
                                "message": f"{source}:{line_no}: {problem}", "attempt": 0, "seq": None,
                                TASK_INDEX: None, ROLLOUT_INDEX: None, "_ng_failure_terminal": True})

    materialized: list[dict[str, Any]] = []
    # the scan checked every row: when none was bad, the stream need not check them again
    rules = plan.rules if plan.bad_rows else dataclasses.replace(plan.rules, check=None)
    try:
        for job in iter_jobs(source, limit=cfg.limit, rules=rules, plan=plan.index_plan, on_problem=skipped,
                             keep=shard_of(cfg).owns):
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
    except InputChangedError as exc:
        log.debug("stopping the run: %s", exc)  # the CLI prints it (cli/collect.py report_stopped)
        stop.fail(exc)  # thread-safe; the run drains and ends with exit 6 and the resume command
    if materialized:  # a stop leaves the file a shorter prefix: resume writes the rest
        sink.put_many(MATERIALIZED, materialized)


@dataclass
class RunPlan:
    """What a run works on, settled before any server starts (refusals happen while making it)."""

    source: Path
    paths: OutputPaths | None  # None: a run without output (no files, no manifest, no resume)
    total: int
    manifest: dict[str, Any]
    stored: dict[str, Any] | None  # the earlier run's manifest when resuming
    rules: RowRules
    index_plan: IndexPlan
    bad_rows: int = 0  # rows the scan refused (on_bad_input=skip: the stream skips them again)


async def plan_collection(cfg: CollectConfig, table: EnvironmentTable) -> RunPlan:
    """Scan the input under the run's row rules (every row routed and checked against its
    environment before any request), then decide fresh / overwrite / resume."""
    paths = output_paths(cfg) if cfg.output_jsonl_fpath else None
    source = await input_or_generated(cfg, table, input_path)
    rules = row_rules(cfg, table)
    try:
        scan = await asyncio.to_thread(scan_file, source, cfg.limit, shard_of(cfg).owns, rules)
    except OSError as exc:
        raise ConfigError(f"input_jsonl_fpath: cannot read {source}: {explain(exc)}") from None
    if cfg.on_bad_input == "fail":
        raise_if_problems(scan)
    extra = {"environments": table.fingerprint(), "prompt_config": prompt_fingerprint(cfg),
             "num_repeats_add_seed": cfg.num_repeats_add_seed}
    manifest = build_manifest(cfg, scan, table.default_agent, extra)
    stored = plan_run(cfg, paths, manifest) if paths is not None else None
    return RunPlan(source, paths, scan.owned_rollouts, manifest, stored, rules, scan.plan, scan.problem_count)


async def open_outputs(plan: RunPlan, served_model: str, aggregator: Aggregator) -> ResumeState:
    """Resume: check the model, repair and read the earlier files. Fresh: write the manifest.
    A file-system error here (no rollout was sent yet) is a ``ConfigError`` saying what to do.
    Without output: nothing to read or write."""
    if plan.paths is None:
        return ResumeState()
    if plan.stored is None:
        begin_fresh(plan.paths, {**plan.manifest, "served_model": served_model})
        return ResumeState()
    check_served_model(plan.paths.manifest, plan.stored, served_model)
    try:
        state = await asyncio.to_thread(load_state, plan.paths, lambda row: aggregator.add(
            row, int((row.get(EXTRAS) or {}).get("task_size") or 1), live=False))
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise ConfigError(f"cannot resume on {plan.paths.rows}: reading or repairing the earlier run's files "
                          f"failed{where}: {explain(exc)}") from None
    log.info("resuming %s: %d rows done, %d failed attempts recorded, %d inputs materialized",
             plan.paths.rows, state.done.count, state.prior_failure_rows, state.materialized)
    return state


@contextlib.contextmanager
def output_sink(plan: RunPlan, stop: StopControl) -> Iterator[Sink]:
    """The writer of the run's line files. A write that fails part-way (disk full, quota, read-only
    file system, I/O error, file size limit) stops the run: ``stop.fail(OutputWriteError)`` as the
    writer thread notices, then the usual drain, and the session raises it (exit 5, with the resume
    command). A failure as the run ends (the last write or fsync), or of another file the run writes
    beside them (the metrics, the spool), ends the run the same way."""
    loop = asyncio.get_running_loop()

    def failed(error: SinkWriteError) -> None:  # on the writer thread
        with contextlib.suppress(RuntimeError):  # the loop is gone: the check after close() raises it
            loop.call_soon_threadsafe(stop.fail, write_stopped(error))

    sink = Sink({ROWS: plan.paths.rows, FAILURES: plan.paths.failures,
                 MATERIALIZED: plan.paths.materialized_inputs}, on_error=failed)
    try:
        sink.__enter__()
    except OSError as exc:
        raise ConfigError(f"cannot open the output files in {plan.paths.folder} (output_jsonl_fpath="
                          f"{plan.paths.rows}): {explain(exc)}") from None
    try:
        try:
            yield sink
        finally:
            sink.close()  # with on_error it does not raise: the failure is checked below
    except Exception as exc:
        cause = find_write_failure(exc)
        if cause is None or isinstance(exc, RunStopped):
            raise
        where = f" {cause.filename}" if cause.filename else f" in {plan.paths.folder}"
        raise stopped_error(OutputWriteError(
            f"writing the run's files failed part-way{where}: {explain_before_resume(cause)}. Every complete line "
            f"written so far is kept."), plan.paths) from exc
    if sink.failure is not None and stop.fatal is None:  # failed as it closed: stop.fail had no time to run
        raise stopped_error(write_stopped(sink.failure), plan.paths)


def write_stopped(error: SinkWriteError) -> BaseException:
    """The error a failed writer stops the run with: ``OutputWriteError`` (exit 5) for the file
    system; otherwise (a row it could not serialise: a bug, or a resource's value) the error itself."""
    if not error.is_file_system:
        return error
    cause = error.cause
    assert isinstance(cause, OSError)
    return OutputWriteError(f"writing {error.path or 'the outputs'} failed part-way: {explain_before_resume(cause)}. "
                            f"Every complete line written so far is kept; a torn last line is repaired on resume.")


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
                         tick_s: float = 0.5, notify: Callable[[str], None] | None = None) -> RunResult:
    """One run (see module doc): one engine session (engine/collection.py) with one run of ``cfg``,
    its parts opened in the order above. ``notify`` receives one-line notices for the user (what
    the environments could not check, NeMo Gym settings not applied, ...)."""
    from gym_rollouts.engine.collection import CollectionSession  # it builds on this module's pieces

    async with CollectionSession(cfg, notify=notify) as session:
        return await session.run(cfg, stop=stop, on_tick=on_tick, tick_s=tick_s)


def stopped_error(fatal: BaseException, paths: OutputPaths | None) -> RunStopped:
    """The error a run that ``stop.fail``-ed ends with: a ``RunStopped`` kind keeps its exit code;
    anything else (a fleet misconfiguration such as a server refusing tools) is exit 2. It carries
    the output paths, so the CLI can print the command that resumes the run."""
    if isinstance(fatal, RunStopped):
        error = fatal
    else:
        error = RunStopped(f"run stopped: {fatal}")
    error.paths = paths  # type: ignore[attr-defined]
    return error


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
