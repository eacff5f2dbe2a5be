"""Shard selection (pure): which input rows a ``shard_index`` / ``num_shards`` job owns.

A shard owns the task indices ``i`` with ``i % num_shards == shard_index`` (round-robin). Task
indices stay global (``_ng_task_index`` is the row's index in the input, counted after ``limit``),
so the shards of one input are disjoint, together cover every row, and merge back cleanly.
Round-robin rather than contiguous blocks: it needs no row count up front (the input is streamed)
and keeps shards balanced when a dataset is ordered by difficulty or length.
"""

from __future__ import annotations

from dataclasses import dataclass


def shard_problems(shard_index: int, num_shards: int) -> list[str]:
    """Why a shard setting is invalid (empty when it is fine)."""
    if num_shards < 1:
        return [f"num_shards must be >= 1, got {num_shards}"]
    if not 0 <= shard_index < num_shards:
        return [f"shard_index must be in 0..{num_shards - 1} for num_shards={num_shards}, got {shard_index}"]
    return []


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        problems = shard_problems(self.index, self.count)
        if problems:
            raise ValueError(problems[0])

    @property
    def is_whole(self) -> bool:
        return self.count == 1

    def owns(self, task_index: int) -> bool:
        return task_index % self.count == self.index

    def size(self, num_tasks: int) -> int:
        """How many of the task indices ``0..num_tasks-1`` this shard owns."""
        if num_tasks <= self.index:
            return 0
        return (num_tasks - 1 - self.index) // self.count + 1


def shard_of(cfg: object) -> Shard:
    """The shard of a typed config (anything with ``shard_index`` and ``num_shards``)."""
    return Shard(int(getattr(cfg, "shard_index", 0)), int(getattr(cfg, "num_shards", 1)))
