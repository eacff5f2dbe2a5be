"""The task source: streams the input JSONL, validates rows, fingerprints them, expands repeats.

Memory is O(1) in the number of rows: rows are read line by line, never all at once. Rows are
laid out ``aabbcc`` for ``num_repeats=2``. ``_ng_task_index`` is the row's position among the
non-blank lines used, unless the row carries its own (as a materialized-inputs file does), in which
case it is kept and consecutive rows sharing it form one task whose ``_ng_rollout_index`` counts
on across them (NeMo Gym's assignment). Every job also gets ``seq``, its position in the expanded
stream: stable across runs of the same inputs and settings, it is the key resume works with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import orjson

from gym_rollouts.errors import InputError
from gym_rollouts.records import ROLLOUT_INDEX, TASK_INDEX

MAX_PROBLEMS_LISTED = 50
MAX_TASK_GROUP = 10_000
AGENT_REF = "agent_ref"
PARAMS = "responses_create_params"


@dataclass(frozen=True, slots=True)
class Job:
    seq: int
    task_index: int
    rollout_index: int
    row: dict[str, Any]  # the materialized row: overrides merged, agent_ref set, indices not set
    line_no: int
    task_size: int  # rollouts of this task in the run (for pass@k)


@dataclass
class InputScan:
    """One validating pass over the input: counts, problems (file:line: message), fingerprint."""

    path: Path
    rows: int = 0
    good_rows: int = 0
    owned_rows: int = 0  # good rows in the tasks ``keep`` selects (a shard's part; all without keep)
    problem_count: int = 0
    problems: list[str] = field(default_factory=list)  # the first MAX_PROBLEMS_LISTED
    sha256: str = ""


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


class _Grouping:
    """The task grouping rule, shared by the scan and the job stream: a row starts a new task
    unless it and the current task's first row carry the same ``_ng_task_index``; a row without
    one is its own task at its position. Refuses a group over ``MAX_TASK_GROUP`` rows."""

    __slots__ = ("task", "explicit", "size")

    def __init__(self) -> None:
        self.task: int | None = None
        self.explicit = False
        self.size = 0

    def add(self, path: Path, line_no: int, position: int, row: dict[str, Any]) -> bool:
        """Place one good row; True when it starts a new task (then ``task`` is its index)."""
        given = row.get(TASK_INDEX)
        new = self.task is None or given is None or not self.explicit or given != self.task
        if new:
            self.task, self.explicit, self.size = (position if given is None else given), given is not None, 0
        if self.size >= MAX_TASK_GROUP:
            raise InputError(f"{path}:{line_no}: more than {MAX_TASK_GROUP} consecutive rows share "
                             f"{TASK_INDEX}={given}")
        self.size += 1
        return new


def scan_file(path: Path, limit: int | None = None, keep: Callable[[int], bool] | None = None) -> InputScan:
    """Read the used lines once: validate every row, hash their bytes (the run's fingerprint),
    count the rows of the tasks ``keep`` selects (same grouping as ``iter_jobs``). A task group
    too large to run raises ``InputError`` here, before anything is written."""
    scan = InputScan(path)
    digest = hashlib.sha256()
    grouping, owned = _Grouping(), False
    for position, (line_no, line) in enumerate(_lines(path, limit)):
        digest.update(line.rstrip(b"\r\n"))
        digest.update(b"\n")
        scan.rows += 1
        row, problem = _parse(line)
        if row is not None:
            scan.good_rows += 1
            if grouping.add(path, line_no, position, row):
                owned = keep is None or keep(grouping.task)  # type: ignore[arg-type]
            scan.owned_rows += owned
            continue
        scan.problem_count += 1
        if len(scan.problems) < MAX_PROBLEMS_LISTED:
            scan.problems.append(f"{path}:{line_no}: {problem}")
    scan.sha256 = digest.hexdigest()
    return scan


def raise_if_problems(scan: InputScan) -> None:
    if not scan.problem_count:
        return
    more = scan.problem_count - len(scan.problems)
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise InputError(
        f"{scan.problem_count} bad input line(s) in {scan.path} (nothing was sent; fix them or pass "
        f"on_bad_input=skip to record them in the failures file and go on):\n  "
        + "\n  ".join(scan.problems) + tail,
        list(scan.problems),
    )


def materialize(row: dict[str, Any], overrides: Mapping[str, Any], agent_name: str) -> dict[str, Any]:
    """The row as run: config ``responses_create_params`` merged over the row's (config wins),
    ``agent_ref`` set when the row has none; the source row is not modified."""
    out = dict(row)
    if overrides:
        out[PARAMS] = {**row[PARAMS], **overrides}
    if AGENT_REF not in out:
        out[AGENT_REF] = {"name": agent_name}
    out.pop(TASK_INDEX, None)
    out.pop(ROLLOUT_INDEX, None)
    return out


def _task_groups(path: Path, limit: int | None, on_problem: Callable[[int, int, str], None] | None
                 ) -> Iterator[list[tuple[int, int, dict[str, Any]]]]:
    """Groups of (line number, task index, row) by the ``_Grouping`` rule. Bad rows go to
    ``on_problem(line_no, position, message)`` and still consume a position."""
    group: list[tuple[int, int, dict[str, Any]]] = []
    grouping = _Grouping()
    for position, (line_no, row, problem) in enumerate(read_rows(path, limit)):
        if row is None:
            if on_problem is not None:
                on_problem(line_no, position, problem or "bad row")
            continue
        if grouping.add(path, line_no, position, row) and group:
            yield group
            group = []
        group.append((line_no, grouping.task, row))  # type: ignore[arg-type]
    if group:
        yield group


def iter_jobs(path: Path, *, limit: int | None, num_repeats: int, overrides: Mapping[str, Any] | None = None,
              agent_name: str = "agent", on_problem: Callable[[int, str], None] | None = None,
              keep: Callable[[int], bool] | None = None) -> Iterator[Job]:
    """Stream jobs in ``aabbcc`` order (see module doc). Bad rows are passed to
    ``on_problem(line_no, message)`` (skip mode; only for the lines ``keep`` selects, a bad
    line's task index being its position) and produce no job. ``keep(task_index)`` selects
    tasks (a shard, see sweep/shard.py) before ``seq`` is assigned."""
    overrides = dict(overrides or {})
    seq = 0

    def problem(line_no: int, position: int, message: str) -> None:
        if on_problem is not None and (keep is None or keep(position)):
            on_problem(line_no, message)

    for group in _task_groups(path, limit, problem):
        if keep is not None and not keep(group[0][1]):
            continue
        size = len(group) * num_repeats
        rollout = 0
        for line_no, task_index, row in group:
            prepared = materialize(row, overrides, agent_name)
            for _ in range(num_repeats):
                yield Job(seq, task_index, rollout, prepared, line_no, size)
                seq += 1
                rollout += 1


def materialized_row(job: Job) -> dict[str, Any]:
    return {**job.row, TASK_INDEX: job.task_index, ROLLOUT_INDEX: job.rollout_index}
