"""Task rows handed to ``Collector.run`` as Python objects: written to a JSONL file first.

A list, any iterable or async iterable of rows (dicts) is read to its end and written, one JSON
line per row, to ``rows.jsonl`` in a temporary folder the run owns; that file is then the run's
input, scanned and streamed by the same code as ``collect``'s (io/source.py): every row is checked
before any request, task and rollout indices are assigned as the CLI assigns them (identical rows
share a task), repeats, resume fingerprints. Memory stays O(one row): rows are encoded as they come.
A streamed source is therefore read completely before the first request (what we chose: the scan
must see every row to validate them and to assign indices like the CLI); for an unbounded stream,
call ``run`` once per batch.

Errors name the row by its position (``row 3``: counted from 1, as a file's line numbers are):
a row that is not JSON-encodable here, a row the scan refuses in the engine's messages, which
``translated`` rewrites from the temporary file's path to the position.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import orjson

from gym_rollouts.errors import ConfigError, GymRolloutsError, InputError

SPOOL_NAME = "rows.jsonl"
WRITE_EVERY = 1 << 20  # bytes gathered before one write
SOURCE = "the rows given to run()"

Rows = Union[Iterable[Mapping[str, Any]], AsyncIterable[Mapping[str, Any]]]


def is_path(rows: Any) -> bool:
    return isinstance(rows, (str, os.PathLike))


def check_rows_argument(rows: Any) -> None:
    """Refuse what cannot be a source of rows, before anything is read."""
    if isinstance(rows, Mapping):
        raise ConfigError("run(rows=...) got one row (a mapping), not rows: wrap it in a list: run([row])")
    if isinstance(rows, (bytes, bytearray)):
        raise ConfigError("run(rows=...) got bytes: pass a list or (async) iterable of rows (dicts), or a path")
    if not isinstance(rows, (Iterable, AsyncIterable)):
        raise ConfigError(f"run(rows=...) takes a list or (async) iterable of task rows (dicts), a JSONL path "
                          f"or None (the config's input); got {type(rows).__name__}")


def _encode(row: Any, position: int) -> bytes:
    try:
        return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    except TypeError as exc:
        raise InputError(f"row {position} of {SOURCE} cannot be written as JSON ({exc}): a task row is a dict "
                         f"of JSON values (str, numbers, bool, None, lists, dicts); nothing was sent") from None


async def spool_rows(rows: Rows, folder: Path) -> tuple[Path, int]:
    """Write ``rows`` to ``folder/rows.jsonl``; (the path, how many rows)."""
    path = folder / SPOOL_NAME
    count = 0
    pending: list[bytes] = []
    size = 0
    with path.open("wb") as fh:
        if isinstance(rows, AsyncIterable):
            async for row in rows:
                count += 1
                pending.append(_encode(row, count))
                size += len(pending[-1])
                if size >= WRITE_EVERY:
                    await asyncio.to_thread(fh.write, b"".join(pending))
                    pending, size = [], 0
        else:
            for row in rows:
                count += 1
                pending.append(_encode(row, count))
                size += len(pending[-1])
                if size >= WRITE_EVERY:
                    fh.write(b"".join(pending))
                    pending, size = [], 0
        fh.write(b"".join(pending))
    if count == 0:
        raise InputError(f"{SOURCE} held no row: pass at least one task row (a dict with responses_create_params); "
                         f"nothing was sent")
    return path, count


def translated(exc: GymRolloutsError, spool: Path) -> GymRolloutsError:
    """``exc`` with the temporary file's path replaced by row positions (module doc); the same
    class. Errors that do not name the file are returned as they are."""
    name = str(spool)
    text = str(exc)
    if name not in text:
        return exc
    fixed = (text.replace(f"in {name} (", f"in {SOURCE} (row numbers count from 1; ")
             .replace(f"input_jsonl_fpath={name}", SOURCE).replace(f"{name}:", "row ").replace(name, SOURCE))
    if isinstance(exc, InputError):
        problems = [p.replace(f"{name}:", "row ") for p in getattr(exc, "problems", None) or []]
        new: GymRolloutsError = InputError(fixed, problems)
    else:
        try:
            new = type(exc)(fixed)
        except TypeError:  # a class with another signature: keep it, its message names the file
            return exc
    for key, value in vars(exc).items():
        if key not in ("problems",):
            setattr(new, key, value)
    return new
