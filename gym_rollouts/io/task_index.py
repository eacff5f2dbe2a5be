"""Task indices as NeMo Gym assigns them, in bounded memory.

NeMo Gym's rule: a row keeps its own ``_ng_task_index`` when it has one; otherwise identical input
lines share one task index and each new distinct line takes the next index (so, without duplicate
lines, a row's task index is its position). Rollout indices count on per task index across the
whole input: rows sharing a task index get distinct rollout indices wherever they stand, so no
output holds two rows with one (task, rollout) key. (A bad line, in ``on_bad_input=skip`` mode,
still takes a position: NeMo Gym has no such mode.)

The input is streamed, never held: a row's *part* is a run of consecutive rows that share an
explicit ``_ng_task_index``, or one row without. Most tasks are one part. Finding the others needs:

- ``duplicate_hashes``: one hashing pass (no JSON parsing) over the lines: a bitmap of 2**26 bits
  (8 MB) of line hashes; a hash met twice is a *candidate* duplicate (false positives are harmless:
  candidates are compared exactly later). Only candidates are remembered.
- ``TaskIndexer``: assigns the task index of each row in stream order; it keeps a dict only for
  candidate lines, and a compact seen-set of task indices (a bitmap for small indices) to tell
  which task indices come in more than one part ("split" tasks, usually none).
- For split tasks, the scan adds up their rollouts (one more pass, only when there are any), so
  each job knows its task's size (pass@k closes a task when all its rollouts are in).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

TASK_INDEX = "_ng_task_index"
_HASH_BITS = 26
_BITMAP_LIMIT = 1 << 24  # task indices below this go to a bitmap (2 MB at most), others to a set


def line_key(line: bytes) -> bytes:
    return line.rstrip(b"\r\n")


def duplicate_hashes(lines: Iterable[bytes]) -> set[int]:
    """Hashes of lines that may occur more than once (see module doc)."""
    bits = bytearray(1 << (_HASH_BITS - 3))
    mask = (1 << _HASH_BITS) - 1
    candidates: set[int] = set()
    for line in lines:
        h = hash(line_key(line))
        slot = h & mask
        byte, bit = slot >> 3, 1 << (slot & 7)
        if bits[byte] & bit:
            candidates.add(h)
        else:
            bits[byte] |= bit
    return candidates


class SeenIndices:
    """A set of task indices: a growable bitmap for small non-negative ones, a set for the rest."""

    __slots__ = ("_bits", "_other")

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set[int] = set()

    def add(self, n: int) -> bool:
        """Add ``n``; False when it was there already."""
        if 0 <= n < _BITMAP_LIMIT:
            byte, bit = n >> 3, 1 << (n & 7)
            if byte >= len(self._bits):
                self._bits.extend(bytes(byte - len(self._bits) + 1 + (len(self._bits) >> 2)))
            if self._bits[byte] & bit:
                return False
            self._bits[byte] |= bit
            return True
        if n in self._other:
            return False
        self._other.add(n)
        return True


class TaskIndexer:
    """Task index and part boundaries of each row, in stream order (see module doc)."""

    __slots__ = ("_candidates", "_by_line", "_next", "_part", "_explicit")

    def __init__(self, candidates: set[int]) -> None:
        self._candidates = candidates
        self._by_line: dict[bytes, int] = {}
        self._next = 0  # the next index a new line without its own takes
        self._part: int | None = None  # task index of the current part
        self._explicit = False  # the current part is a run of rows with an explicit index

    def bad_line(self) -> int:
        """A bad line (skip mode) takes a position, as before; returns it."""
        self._part = None
        index = self._next
        self._next += 1
        return index

    def add(self, line: bytes, row: Mapping[str, Any]) -> tuple[int, bool]:
        """(task index, whether this row starts a new part)."""
        given = row.get(TASK_INDEX)
        if given is not None:
            new = not (self._explicit and given == self._part)
            self._part, self._explicit = given, True
            return given, new
        self._explicit = False
        key = line_key(line)
        if hash(key) in self._candidates:
            digest = hashlib.blake2b(key, digest_size=16).digest()  # candidates only: exact, and small
            known = self._by_line.get(digest)
            if known is not None:
                self._part = known
                return known, True
            self._by_line[digest] = self._next
        self._part = self._next
        self._next += 1
        return self._part, True
