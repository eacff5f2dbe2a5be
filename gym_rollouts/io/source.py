"""The task source: streams the input JSONL, validates rows, fingerprints them, expands repeats.

Memory is O(1) in the number of rows: rows are read line by line, never all at once. Rows are
laid out ``aabbcc`` for ``num_repeats=2``. Task and rollout indices follow NeMo Gym's assignment
(see io/task_index.py): a row's own ``_ng_task_index`` is kept, identical lines share a task,
rollout indices count on per task across the whole input. Every job also gets ``seq``, its
position in the expanded stream: stable across runs of the same inputs and settings, it is the key
resume works with.

How a parsed line becomes a row to run is given by ``RowRules`` (the engine builds them from the
config): ``prepare`` (NeMo Gym's prompt_config templating, before validation), the config's
``responses_create_params`` overrides and the default agent (materialization), ``check`` (routing,
tools, request fields: a problem refuses the row like a malformed line), ``repeats`` (per agent)
and ``add_seed`` (NeMo Gym's num_repeats_add_seed: each rollout gets seed = its rollout index).
The scan and the job stream apply the same rules, so they always agree. ``refuse_empty`` (set
for a run) is called when the scan finds nothing to run, and raises the error that says why.

The file must not change under the run: the scan's first pass records what it read
(io/input_snapshot.py) and every later pass, the job stream included, reads only content proven
the same; a change stops with ``InputChangedError`` before a job is made from the changed lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import orjson

from gym_rollouts.errors import InputError
from gym_rollouts.io.input_snapshot import InputSnapshot, Line
from gym_rollouts.io.task_index import SeenIndices, TaskIndexer, duplicate_hashes
from gym_rollouts.records import ROLLOUT_INDEX, TASK_INDEX

MAX_PROBLEMS_LISTED = 50
MAX_TASK_GROUP = 10_000
AGENT_REF = "agent_ref"
PARAMS = "responses_create_params"
SCAN_ADVICE = ("Nothing was sent. Run the command again once the file is complete (write it elsewhere and "
               "rename it into place).")
STREAM_ADVICE = ("No job was made from the changed lines: the rollouts written so far came from the file as it "
                 "was scanned and stay valid. Restore the file as it was and resume, or collect the new file "
                 "into a new output (another output_jsonl_fpath, or overwrite=true).")


@dataclass(frozen=True, slots=True)
class Job:
    seq: int
    task_index: int
    rollout_index: int
    row: dict[str, Any]  # the materialized row: overrides merged, agent_ref set, indices not set
    line_no: int
    task_size: int  # rollouts of this task in the run (for pass@k)


@dataclass(frozen=True)
class RowRules:
    """How a parsed line becomes the row that runs (see module doc)."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    agent_name: str | None = "agent"
    repeats: int | Callable[[dict[str, Any]], int] = 1
    prepare: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]] | None = None
    check: Callable[[dict[str, Any]], str | None] | None = None
    add_seed: bool = False
    refuse_empty: Callable[[InputScan], None] | None = None  # raises when the scan leaves nothing to run

    def repeats_of(self, row: dict[str, Any]) -> int:
        return self.repeats if isinstance(self.repeats, int) else self.repeats(row)


@dataclass
class IndexPlan:
    """What the scan learnt about task indices (io/task_index.py): lines that may repeat, and the
    total rollouts of every task that comes in more than one part; and what it read (``snapshot``:
    the job stream reads only content proven the same)."""

    candidates: set[int] = field(default_factory=set)
    split_sizes: dict[int, int] = field(default_factory=dict)
    snapshot: InputSnapshot | None = None


@dataclass
class InputScan:
    """One validating pass over the input: counts, problems (file:line: message), fingerprint."""

    path: Path
    rows: int = 0  # non-blank lines used
    blank_lines: int = 0  # blank lines among (and before) them
    good_rows: int = 0
    owned_rows: int = 0  # good rows in the tasks ``keep`` selects (a shard's part; all without keep)
    owned_rollouts: int = 0  # the rollouts those rows expand to (repeats included)
    problem_count: int = 0
    problems: list[str] = field(default_factory=list)  # the first MAX_PROBLEMS_LISTED
    sha256: str = ""
    plan: IndexPlan = field(default_factory=IndexPlan)
    listed_lines: int = 0  # bad lines named in ``problems``
    _last: tuple[str, list[int]] | None = None  # the listed entry's message and lines (merged when equal)

    def add_problem(self, line_no: int, message: str) -> None:
        """Count a bad line; list it as ``path:line: message``, consecutive lines with the same
        message in one entry (``path:3, 4, 5: message``), at most MAX_PROBLEMS_LISTED entries."""
        self.problem_count += 1
        if self._last is not None and self._last[0] == message and len(self._last[1]) < 20:
            self._last[1].append(line_no)
            self.problems[-1] = f"{self.path}:{', '.join(map(str, self._last[1]))}: {message}"
            self.listed_lines += 1
        elif len(self.problems) < MAX_PROBLEMS_LISTED:
            self._last = (message, [line_no])
            self.problems.append(f"{self.path}:{line_no}: {message}")
            self.listed_lines += 1
        else:
            self._last = None


def row_problem(row: Any) -> str | None:
    """Why a parsed line cannot be a task row (None when it can)."""
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    params = row.get(PARAMS)
    if params is None:
        return f"missing '{PARAMS}'"
    if not isinstance(params, dict):
        return f"'{PARAMS}' must be an object, got {type(params).__name__}"
    items = params.get("input")
    if items is None:
        return f"missing '{PARAMS}.input'"
    if not isinstance(items, (str, list)):
        return f"'{PARAMS}.input' must be a string or a list, got {type(items).__name__}"
    if isinstance(items, list) and not all(isinstance(i, dict) for i in items):
        return f"'{PARAMS}.input' items must be objects"
    tools = params.get("tools")
    if tools is not None and not isinstance(tools, list):
        return f"'{PARAMS}.tools' must be a list, got {type(tools).__name__}"
    for key in (TASK_INDEX, ROLLOUT_INDEX):
        if key in row and (not isinstance(row[key], int) or isinstance(row[key], bool)):
            return f"'{key}' must be an integer"
    ref = row.get(AGENT_REF)
    if ref is not None and not (isinstance(ref, dict) and isinstance(ref.get("name"), str)):
        return f"'{AGENT_REF}' must be an object with a string 'name'"
    return None


def _lines(path: Path, limit: int | None) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for the first ``limit`` non-blank lines."""
    used = 0
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if limit is not None and used >= limit:
                return
            if not line.strip():
                continue
            used += 1
            yield line_no, line


def _parse(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc})"
    problem = row_problem(row)
    return (row if problem is None else None), problem


def read_rows(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, row or None, problem or None) for the first ``limit`` non-blank lines."""
    for line_no, line in _lines(path, limit):
        row, problem = _parse(line)
        yield line_no, row, problem


def materialize(row: dict[str, Any], overrides: Mapping[str, Any], agent_name: str | None) -> dict[str, Any]:
    """The row as run: config ``responses_create_params`` merged over the row's (config wins),
    ``agent_ref`` set when the row has none (and a default agent exists); the source row is not
    modified."""
    out = dict(row)
    if overrides:
        out[PARAMS] = {**row[PARAMS], **overrides}
    if AGENT_REF not in out and agent_name is not None:
        out[AGENT_REF] = {"name": agent_name}
    out.pop(TASK_INDEX, None)
    out.pop(ROLLOUT_INDEX, None)
    return out


@dataclass(slots=True)
class _Parsed:
    line_no: int
    line: bytes
    source: dict[str, Any] | None  # the parsed row before materialization (its own indices kept)
    row: dict[str, Any] | None  # the materialized row; None when the line is bad
    problem: str | None


def _rows(lines: Iterator[Line], rules: RowRules) -> Iterator[_Parsed]:
    """Every used line, parsed, prepared, validated, materialized and checked by ``rules``."""
    for line_no, line in lines:
        try:
            source: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield _Parsed(line_no, line, None, None, f"invalid JSON ({exc})")
            continue
        problem = None
        if rules.prepare is not None and isinstance(source, dict):
            source, problem = rules.prepare(source)
        problem = problem or row_problem(source)
        if problem is not None:
            yield _Parsed(line_no, line, None, None, problem)
            continue
        row = materialize(source, rules.overrides, rules.agent_name)
        problem = rules.check(row) if rules.check is not None else None
        yield _Parsed(line_no, line, source, None if problem else row, problem)


def _index_plan(path: Path, limit: int | None, rules: RowRules, *, scan: InputScan | None = None,
                keep: Callable[[int], bool] | None = None) -> IndexPlan:
    """Pass 1 hashes the lines (no parsing) and records what it read (``plan.snapshot``); pass 2
    parses, validates (into ``scan``) and finds the tasks in more than one part; pass 3 (only when
    there are such tasks) adds up their rollouts. Passes 2 and 3 read only content proven the
    same as pass 1's (``InputChangedError`` otherwise)."""
    snapshot = InputSnapshot(path, limit)
    plan = IndexPlan(candidates=duplicate_hashes(line for _, line in snapshot.record()), snapshot=snapshot)
    indexer, seen, split = TaskIndexer(plan.candidates), SeenIndices(), set()
    digest = hashlib.sha256()
    part_size, owned = 0, False
    for item in _rows(snapshot.verified(SCAN_ADVICE), rules):
        digest.update(item.line.rstrip(b"\r\n"))
        digest.update(b"\n")
        if scan is not None:
            scan.rows += 1
        if item.row is None:
            indexer.bad_line()
            if scan is not None:
                scan.add_problem(item.line_no, item.problem or "bad row")
            continue
        task, new = indexer.add(item.line, item.source)  # type: ignore[arg-type]
        if new:
            part_size, owned = 0, keep is None or keep(task)
            if not seen.add(task):
                split.add(task)
        part_size += 1
        if part_size > MAX_TASK_GROUP:
            raise InputError(f"{path}:{item.line_no}: more than {MAX_TASK_GROUP} consecutive rows share "
                             f"{TASK_INDEX}={task}")
        if scan is not None:
            scan.good_rows += 1
            if owned:
                scan.owned_rows += 1
                scan.owned_rollouts += rules.repeats_of(item.row)
    if scan is not None:
        scan.sha256 = digest.hexdigest()
    if split:
        indexer = TaskIndexer(plan.candidates)
        for item in _rows(snapshot.verified(SCAN_ADVICE), rules):
            if item.row is None:
                indexer.bad_line()
                continue
            task, _ = indexer.add(item.line, item.source)  # type: ignore[arg-type]
            if task in split:
                plan.split_sizes[task] = plan.split_sizes.get(task, 0) + rules.repeats_of(item.row)
    return plan


def scan_file(path: Path, limit: int | None = None, keep: Callable[[int], bool] | None = None,
              rules: RowRules | None = None) -> InputScan:
    """Read the used lines: validate every row under ``rules``, hash their bytes (the run's
    fingerprint), count the rows and rollouts of the tasks ``keep`` selects, and plan the task
    indices (``scan.plan``, handed to ``iter_jobs``). A task part too large to run raises
    ``InputError`` here, before anything is written; so does ``rules.refuse_empty`` when no
    rollout is left to run; ``InputChangedError`` when the file changes while it is read."""
    rules = rules or RowRules()
    scan = InputScan(path)
    scan.plan = _index_plan(path, limit, rules, scan=scan, keep=keep)
    if scan.plan.snapshot is not None:
        scan.blank_lines = scan.plan.snapshot.blank_lines
    if scan.owned_rollouts == 0 and rules.refuse_empty is not None:
        rules.refuse_empty(scan)
    return scan


def problem_listing(scan: InputScan) -> str:
    """The listed problems, one per line (indented), and how many more there are."""
    more = scan.problem_count - scan.listed_lines
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return "\n  " + "\n  ".join(scan.problems) + tail


def raise_if_problems(scan: InputScan) -> None:
    if not scan.problem_count:
        return
    raise InputError(
        f"{scan.problem_count} bad input line(s) in {scan.path} (nothing was sent; fix them or pass "
        f"on_bad_input=skip to record them in the failures file and go on):" + problem_listing(scan),
        list(scan.problems),
    )


def _with_seed(row: dict[str, Any], seed: int) -> dict[str, Any]:
    """NeMo Gym's num_repeats_add_seed: ``seed`` in the row's ``metadata.extra_body`` (a JSON string)."""
    params = dict(row[PARAMS])
    metadata = dict(params.get("metadata") or {})
    raw = metadata.get("extra_body")
    try:
        extra = orjson.loads(raw) if isinstance(raw, (str, bytes)) and raw else dict(raw or {})
    except (orjson.JSONDecodeError, TypeError, ValueError):
        extra = {}  # the adapter refuses a bad extra_body by name; the seed does not hide it
        metadata["extra_body_invalid"] = raw
    extra["seed"] = seed
    metadata["extra_body"] = orjson.dumps(extra).decode()
    params["metadata"] = metadata
    return {**row, PARAMS: params}


def iter_jobs(path: Path, *, limit: int | None, num_repeats: int | None = None,
              overrides: Mapping[str, Any] | None = None, agent_name: str | None = "agent",
              on_problem: Callable[[int, str], None] | None = None, keep: Callable[[int], bool] | None = None,
              rules: RowRules | None = None, plan: IndexPlan | None = None) -> Iterator[Job]:
    """Stream jobs in ``aabbcc`` order (see module doc). Bad rows are passed to
    ``on_problem(line_no, message)`` (skip mode; only for the lines ``keep`` selects, a bad
    line's task index being its position) and produce no job. ``keep(task_index)`` selects
    tasks (a shard, see sweep/shard.py) before ``seq`` is assigned. ``rules`` (or the shorthand
    ``num_repeats`` / ``overrides`` / ``agent_name``) say how lines become rows; ``plan`` is the
    scan's (computed here when not given). Lines are read only once proven the same as the scan
    read them: a change raises ``InputChangedError`` before any job comes from changed lines."""
    if rules is None:
        rules = RowRules(overrides=dict(overrides or {}), agent_name=agent_name, repeats=num_repeats or 1)
    if plan is None:
        plan = _index_plan(path, limit, rules)
    if plan.snapshot is None:
        raise ValueError("iter_jobs needs the plan of a scan (scan_file(...).plan), which records what it read")
    if plan.snapshot.limit != limit or plan.snapshot.path != path:
        raise ValueError(f"iter_jobs(limit={limit}) on {path} with the plan of a scan of {plan.snapshot.path} "
                         f"with limit={plan.snapshot.limit}")
    indexer = TaskIndexer(plan.candidates)
    next_rollout: dict[int, int] = {}  # split tasks: where their rollout indices go on
    seq = 0
    part: list[tuple[int, dict[str, Any]]] = []
    part_task = 0

    def flush() -> Iterator[Job]:
        nonlocal seq
        if not part or (keep is not None and not keep(part_task)):
            return
        counts = [rules.repeats_of(row) for _, row in part]
        size = plan.split_sizes.get(part_task) or sum(counts)
        rollout = next_rollout.get(part_task, 0)
        for (line_no, row), count in zip(part, counts):
            for _ in range(count):
                yield Job(seq, part_task, rollout, _with_seed(row, rollout) if rules.add_seed else row, line_no, size)
                seq += 1
                rollout += 1
        if part_task in plan.split_sizes:
            next_rollout[part_task] = rollout

    for item in _rows(plan.snapshot.verified(STREAM_ADVICE), rules):
        if item.row is None:
            position = indexer.bad_line()
            if on_problem is not None and (keep is None or keep(position)):
                on_problem(item.line_no, item.problem or "bad row")
            continue
        task, new = indexer.add(item.line, item.source)  # type: ignore[arg-type]
        if new:
            yield from flush()
            part, part_task = [], task
        part.append((item.line_no, item.row))
    yield from flush()


def materialized_row(job: Job) -> dict[str, Any]:
    return {**job.row, TASK_INDEX: job.task_index, ROLLOUT_INDEX: job.rollout_index}
