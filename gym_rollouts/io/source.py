"""The task source: streams the input JSONL, validates rows, expands repeats.

Memory is O(1) in the number of rows: rows are read line by line, never all at once. Rows are
laid out ``aabbcc`` for ``num_repeats=2`` with ``_ng_task_index`` = the row's index among the
rows used and ``_ng_rollout_index`` = the repeat, as NeMo Gym assigns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

from gym_rollouts.errors import InputError

MAX_PROBLEMS_LISTED = 50


@dataclass(frozen=True)
class Job:
    task_index: int
    rollout_index: int
    row: dict[str, Any]
    line_no: int


def row_problem(row: Any) -> str | None:
    """Why a parsed line cannot be a task row (None when it can)."""
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    params = row.get("responses_create_params")
    if params is None:
        return "missing 'responses_create_params'"
    if not isinstance(params, dict):
        return f"'responses_create_params' must be an object, got {type(params).__name__}"
    items = params.get("input")
    if items is None:
        return "missing 'responses_create_params.input'"
    if not isinstance(items, (str, list)):
        return f"'responses_create_params.input' must be a string or a list, got {type(items).__name__}"
    if isinstance(items, list) and not all(isinstance(i, dict) for i in items):
        return "'responses_create_params.input' items must be objects"
    tools = params.get("tools")
    if tools is not None and not isinstance(tools, list):
        return f"'responses_create_params.tools' must be a list, got {type(tools).__name__}"
    for key in ("_ng_task_index", "_ng_rollout_index"):
        if key in row and not isinstance(row[key], int):
            return f"'{key}' must be an integer"
    return None


def read_rows(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, row or None, problem or None) for the first ``limit`` non-blank lines."""
    used = 0
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if limit is not None and used >= limit:
                return
            if not line.strip():
                continue
            used += 1
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield line_no, None, f"invalid JSON ({exc})"
                continue
            problem = row_problem(row)
            yield line_no, (row if problem is None else None), problem


def validate_file(path: Path, limit: int | None = None) -> tuple[int, list[str]]:
    """(number of rows, problems as 'file:line: message'), reading the whole file once."""
    count, problems = 0, []
    for line_no, _row, problem in read_rows(path, limit):
        count += 1
        if problem:
            problems.append(f"{path}:{line_no}: {problem}")
    return count, problems


def raise_if_problems(path: Path, problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_PROBLEMS_LISTED]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    raise InputError(
        f"{len(problems)} bad input line(s) in {path} (nothing was sent; fix them or pass on_bad_input=skip):\n  "
        + "\n  ".join(shown) + more,
        problems,
    )


def iter_jobs(path: Path, *, limit: int | None, num_repeats: int,
              on_problem: Any = None) -> Iterator[Job]:
    """Stream jobs in ``aabbcc`` order. Bad rows are passed to ``on_problem(line_no, message)``
    (skip mode) and still consume a task index, so indices match the file's row order."""
    task_index = -1
    for line_no, row, problem in read_rows(path, limit):
        task_index += 1
        if row is None:
            if on_problem is not None:
                on_problem(line_no, problem)
            continue
        for rollout_index in range(num_repeats):
            yield Job(task_index, rollout_index, row, line_no)
