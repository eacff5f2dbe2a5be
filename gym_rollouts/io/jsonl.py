"""Crash safety of append-only JSONL files: detect and repair a torn last line, count lines.

A process killed mid-``write`` (``kill -9``, OOM, power loss) can leave a file whose last line is
incomplete (no trailing ``\\n``, or a complete-looking line that is not JSON, e.g. NUL bytes after
a power loss). ``repair_tail`` truncates such a tail so that every line left is one complete JSON
document; everything before it is untouched. Reading is chunked: memory O(chunk), not O(file).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson

log = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Repair:
    path: Path
    removed_bytes: int

    def __str__(self) -> str:
        return f"{self.path}: removed a torn last line ({self.removed_bytes} bytes)"


def _last_newline_before(fh, end: int) -> int:
    """Offset just after the last ``\\n`` strictly before ``end`` (0 when there is none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - CHUNK)
        fh.seek(start)
        chunk = fh.read(pos - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def repair_tail(path: Path) -> Repair | None:
    """Truncate a torn tail of ``path`` (see module doc); None when the file was clean or absent."""
    if not path.exists():
        return None
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        good = size
        while good > 0:
            fh.seek(good - 1)
            if fh.read(1) != b"\n":  # no trailing newline: the last line is torn
                good = _last_newline_before(fh, good)
                continue
            start = _last_newline_before(fh, good - 1)
            fh.seek(start)
            line = fh.read(good - start)
            if not line.strip():
                break  # a blank line is harmless
            try:
                orjson.loads(line)
                break
            except orjson.JSONDecodeError:
                good = start  # a complete-looking line that is not JSON: drop it too
        if good == size:
            return None
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())
    repair = Repair(path, size - good)
    log.warning("%s", repair)
    return repair


def count_lines(path: Path) -> int:
    """Number of ``\\n``-terminated lines (0 for a missing file)."""
    if not path.exists():
        return 0
    total = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            total += chunk.count(b"\n")
    return total


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; a line that is not a JSON object
    raises ``ValueError`` naming the file and line (only a torn *last* line is repairable)."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc})") from None
            if not isinstance(value, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, value
