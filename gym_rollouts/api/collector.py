"""``Collector``: rollouts as Python objects, inside the caller's event loop (docs/library.md).

``async with Collector(cfg) as c`` opens the long-lived parts once (engine/collection.py
``CollectionSession``: environments, backend, connections, fleet discovery, router, policy);
``async for row in c.run(rows)`` is one run on them and yields each finished rollout's row (the row
``collect`` writes) as it finishes; a training loop calls ``run`` once per step. ``collect(...)``
is the blocking form for scripts (its own event loop). ``run_config`` is what the ``collect``
command runs (cli/collect.py): one run exactly as the config says, parts opened lazily so a bad
input is refused before any server starts.

Rows: a list / iterable / async iterable of task rows (api/rows.py: read to the end and checked
before any request), a JSONL path, or None (the config's input). Output: none by default; with
``output=`` the same files as ``collect`` (lock, manifest, materialized inputs, failures, metrics)
and ``resume=True`` continues an earlier run on it. A rollout that fails every attempt yields
nothing: ``c.last_run`` (a ``RunResult``) counts it (``failures``) and holds its failure rows.
Back-pressure: rows not yet taken by the caller hold the workers back (at most
``BACKLOG_MAX`` + workers rows wait). Breaking out of the loop stops the run (in-flight rollouts
are cancelled; with ``output=`` they run again on resume): use ``contextlib.aclosing`` so that
happens at once. Weight updates: ``await c.pause(mode)`` / ``await c.resume(version)``
(router/pause.py), during a run or between runs. Nothing prints; errors are gym_rollouts.errors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import orjson

from gym_rollouts.api.config import load_config
from gym_rollouts.api.rows import Rows, check_rows_argument, is_path, spool_rows, translated
from gym_rollouts.config.schema import CollectConfig, normalize_num_repeats
from gym_rollouts.engine.collection import CollectionSession
from gym_rollouts.engine.generated_inputs import generates_inputs
from gym_rollouts.engine.session import RunResult, Tick, run_collection
from gym_rollouts.engine.shutdown import StopControl
from gym_rollouts.errors import ConfigError, GymRolloutsError

__all__ = ["BACKLOG_MAX", "Collected", "Collector", "collect", "run_config"]

log = logging.getLogger(__name__)
BACKLOG_MAX = 256  # rows finished and not yet taken by the caller before workers wait (runner.py _drain)
_END = object()


class _RowQueue:
    """The run's rows on their way to the caller (an engine ``Outlet``). With an output file the
    caller gets its own copy (the writer thread still serialises the original)."""

    def __init__(self, copy: bool) -> None:
        self._rows: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._copy = copy
        self._done = False

    @property
    def backlog(self) -> int:
        return len(self._rows)

    def put(self, row: dict[str, Any]) -> None:
        self._rows.append(_copied(row) if self._copy else row)
        self._ready.set()

    def finish(self, *_: Any) -> None:
        self._done = True
        self._ready.set()

    async def get(self) -> Any:
        while not self._rows:
            if self._done:
                return _END
            self._ready.clear()
            await self._ready.wait()
        return self._rows.popleft()


def _copied(row: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (through JSON: the row is what the writer serialises; else ``copy.deepcopy``)."""
    try:
        return orjson.loads(orjson.dumps(row))
    except (TypeError, orjson.JSONEncodeError):
        return copy.deepcopy(row)


class Collector:
    """One collection engine for many runs (module doc). ``on_notice`` receives one-line notices
    for the user (also logged at INFO)."""

    def __init__(self, cfg: CollectConfig, *, on_notice: Callable[[str], None] | None = None) -> None:
        if not isinstance(cfg, CollectConfig):
            raise ConfigError(f"Collector(cfg) takes a CollectConfig (load_config([...])), got {type(cfg).__name__}")
        self.cfg = cfg
        self.last_run: RunResult | None = None
        self.runs = 0
        self._on_notice = on_notice
        self._session: CollectionSession | None = None
        self._active: tuple[asyncio.Task[RunResult], StopControl] | None = None
        self._queue: _RowQueue | None = None
        self._running = False  # a run() is between its first step and its end

    async def __aenter__(self) -> "Collector":
        if self._session is not None:
            raise ConfigError("this Collector is already open: use one `async with` block per Collector")
        session = CollectionSession(self.cfg, notify=self._on_notice)
        await session.__aenter__()
        try:
            await session.open()
        except BaseException as exc:
            await session.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._session = session
        return self

    async def __aexit__(self, *exc: Any) -> None:
        session, self._session = self._session, None
        if self._active is not None:
            await _abandon(*self._active)
        if session is not None:
            await session.__aexit__(*exc)

    @property
    def session(self) -> CollectionSession:
        if self._session is None:
            raise ConfigError("the Collector is not open: use it as `async with Collector(cfg) as c:`")
        return self._session

    @property
    def model_name(self) -> str:
        fleet = self.session.fleet
        assert fleet is not None
        return fleet.model_name

    @property
    def base_urls(self) -> tuple[str, ...]:
        """The servers this collector routes to (the embedded ones it started, or the fleet's)."""
        return self.session.base_urls

    async def run(self, rows: Rows | str | os.PathLike[str] | None = None, *,
                  output: str | os.PathLike[str] | None = None,
                  resume: bool = False, overwrite: bool = False, num_repeats: int | dict[str, int] | None = None,
                  limit: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Run ``rows`` and yield each finished rollout's row as it finishes (module doc).

        ``output``: a JSONL path (the ``collect`` files beside it); ``resume``: continue an earlier
        run on ``output`` (the same rows and settings, else ``ConfigError`` naming the difference);
        ``overwrite``: start clean on an existing ``output``; ``num_repeats`` (rollouts per task)
        and ``limit`` (first N rows) replace the config's for this run. With ``resume`` the rows
        already on file are not yielded again (read them from ``output``)."""
        session = self.session
        if self._running:
            raise ConfigError("another run of this Collector is still in progress: finish iterating it (or "
                              "`await it.aclose()`; `contextlib.aclosing(c.run(...))` does it for you) first")
        self._running = True
        try:
            async with contextlib.aclosing(self._spooled(session, rows, output=output, resume=resume,
                                                         overwrite=overwrite, num_repeats=num_repeats,
                                                         limit=limit)) as stream:
                async for row in stream:
                    yield row
        finally:
            self._running = False

    async def _spooled(self, session: CollectionSession, rows: Any, *, output: Any, resume: bool, overwrite: bool,
                       num_repeats: Any, limit: Any) -> AsyncIterator[dict[str, Any]]:
        with tempfile.TemporaryDirectory(prefix="gym-rollouts-rows-") as folder:
            spool: Path | None = None
            try:
                if rows is None and self._generates_without_output(output):
                    rows = session_rows(session)
                if rows is not None and not is_path(rows):
                    check_rows_argument(rows)
                    spool, _ = await spool_rows(rows, Path(folder))  # type: ignore[arg-type]
                cfg = self._run_config(spool or rows, output=output, resume=resume, overwrite=overwrite,
                                       num_repeats=num_repeats, limit=limit)
            except GymRolloutsError as exc:
                raise (translated(exc, spool) if spool else exc) from None
            async with contextlib.aclosing(self._stream(session, cfg, copy=bool(output), spool=spool)) as stream:
                async for row in stream:
                    yield row

    async def _stream(self, session: CollectionSession, cfg: CollectConfig, *, copy: bool,
                      spool: Path | None) -> AsyncIterator[dict[str, Any]]:
        queue, stop = _RowQueue(copy), StopControl()
        task = asyncio.create_task(session.run(cfg, stop=stop, outlet=queue), name="gym-rollouts-run")
        task.add_done_callback(queue.finish)
        self._active, self._queue = (task, stop), queue
        self.runs += 1
        try:
            while (row := await queue.get()) is not _END:
                yield row
            self.last_run = await task
        except GymRolloutsError as exc:
            raise (translated(exc, spool) if spool else exc) from None
        finally:
            if not task.done():  # the caller stopped reading (or was cancelled): stop the run now
                await _abandon(task, stop)
                if not task.cancelled() and task.exception() is None:
                    self.last_run = task.result()
            self._active = self._queue = None

    def _generates_without_output(self, output: Any) -> bool:
        return output is None and not self.cfg.input_jsonl_fpath and generates_inputs(self.cfg)

    def _run_config(self, source: Any, *, output: Any, resume: bool, overwrite: bool, num_repeats: Any,
                    limit: Any) -> CollectConfig:
        if resume and output is None:
            raise ConfigError("run(resume=True) needs output=<the JSONL path of the run to continue>: without an "
                              "output file there is nothing to resume")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ConfigError(f"run(limit=...) must be an integer >= 0 or None, got {limit!r}")
        changes: dict[str, Any] = {
            "output_jsonl_fpath": str(Path(output).expanduser()) if output is not None else None,
            "resume_from_cache": bool(resume), "overwrite": bool(overwrite)}
        if source is not None:
            changes["input_jsonl_fpath"] = str(Path(source).expanduser())
        if num_repeats is not None:
            changes["num_repeats"] = normalize_num_repeats(num_repeats)
        if limit is not None:
            changes["limit"] = limit
        return dataclasses.replace(self.cfg, **changes)

    async def run_all(self, rows: Rows | str | os.PathLike[str] | None = None, **options: Any) -> "Collected":
        """``run`` gathered into a list (memory O(rows): for large runs stream, or use ``output=``)."""
        out = [row async for row in self.run(rows, **options)]
        assert self.last_run is not None
        return Collected(out, self.last_run)

    @property
    def pending_rows(self) -> int:
        """Rows of the run in progress that finished and wait for the caller to take them."""
        return self._queue.backlog if self._queue is not None else 0

    def stop(self) -> None:
        """Stop the run in progress gracefully: no new rollouts; in-flight ones get ``shutdown_grace_s``
        (a second call cancels them). The iteration then ends, ``last_run.interrupted`` is true."""
        if self._active is not None:
            self._active[1].request("Collector.stop()")

    async def pause(self, mode: str = "wait") -> None:
        """Hold new model calls (weight update). ``wait``: returns once the calls in flight finished;
        ``abort``: they are abandoned now and sent again after ``resume`` (the turn is redone, no
        failure recorded). With ``weights.server_pause`` the vLLM servers are paused too."""
        await self._pause_control().pause(mode)

    async def resume(self, version: str | None = None) -> None:
        """Let model calls go out again; ``version`` labels every call sent from now on (recorded per
        call in the rows, docs/weights.md). None keeps the current label."""
        await self._pause_control().resume_async(version)

    @property
    def paused(self) -> bool:
        return bool(self._session is not None and self._session.pause is not None and self._session.pause.paused)

    @property
    def weight_version(self) -> str | None:
        """The weight-version label calls are sent under now."""
        pause = self.session.pause
        return pause.version if pause is not None else self.cfg.weights.version

    def _pause_control(self) -> Any:
        pause = self.session.pause
        if pause is None:  # pragma: no cover - the session makes one as the fleet opens
            raise ConfigError("this Collector has no pause control (its fleet is not open)")
        return pause


def session_rows(session: CollectionSession) -> Any:
    """The rows the config's default resource generates (a run with neither rows nor output)."""
    table = session.table
    resource = table.default_resource if table is not None else None
    rows = resource.generated_rows() if resource is not None else None
    if rows is None:  # pragma: no cover - generates_inputs said it would
        raise ConfigError("the resource generates no rows: pass rows, or set input_jsonl_fpath")
    return rows


async def _abandon(task: asyncio.Task[Any], stop: StopControl) -> None:
    """Stop a run at once (in-flight rollouts cancelled) and wait for it to end."""
    if not task.done():
        stop.request("the caller stopped reading the rows")
        stop.request("the caller stopped reading the rows")  # the second request cancels the in-flight ones
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise
    if not task.cancelled() and task.exception() is not None:
        log.debug("the abandoned run ended with %r", task.exception())


@dataclass
class Collected:
    """What ``collect`` / ``Collector.run_all`` return: every row, and the run's result."""

    rows: list[dict[str, Any]]
    result: RunResult
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = self.result.summary

    @property
    def failures(self) -> int:
        return self.result.failures


def collect(cfg: CollectConfig | Sequence[str] = (), rows: Rows | str | os.PathLike[str] | None = None,
            **options: Any) -> Collected:
    """Blocking: open a ``Collector`` on ``cfg`` (a ``CollectConfig``, or overrides for
    ``load_config``), run ``rows`` once (``options`` as for ``Collector.run``), close it. Runs its own
    event loop: inside async code use ``Collector``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("collect() runs its own event loop and cannot be called from async code: use "
                          "`async with Collector(cfg) as c: async for row in c.run(rows): ...` there")
    config = cfg if isinstance(cfg, CollectConfig) else load_config(cfg)

    async def main() -> Collected:
        async with Collector(config) as collector:
            return await collector.run_all(rows, **options)

    return asyncio.run(main())


async def run_config(cfg: CollectConfig, *, stop: StopControl | None = None, on_tick: Tick | None = None,
                     tick_s: float = 0.5, notify: Callable[[str], None] | None = None) -> RunResult:
    """What the ``collect`` command runs: one run exactly as ``cfg`` says (its ``input_jsonl_fpath``,
    ``output_jsonl_fpath``, ``resume_from_cache``, ``overwrite``), on a session opened lazily in
    ``collect``'s order (the output's lock and the input scan before any server starts)."""
    return await run_collection(cfg, stop=stop, on_tick=on_tick, tick_s=tick_s, notify=notify)
