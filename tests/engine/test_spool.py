"""SortedSpool: records pushed in any order come back in key order, memory bounded by the window."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gym_rollouts.engine.spool import SortedSpool


def _drain(spool: SortedSpool) -> list[tuple[int, bytes]]:
    spool.finish()
    return list(spool.records())


@pytest.mark.parametrize(("order", "window", "max_runs"), [
    ("sorted", 4, 1),
    ("nearly", 16, 1),      # disorder within the window: one run, as completion order gives
    ("shuffled", 8, 400),   # no order at all: many runs, merged
    ("reversed", 4, 400),
])
def test_records_come_back_in_key_order(tmp_path: Path, order: str, window: int, max_runs: int) -> None:
    keys = list(range(500))
    if order == "nearly":
        keys = sorted(keys, key=lambda k: k + random.Random(k).uniform(0, 12))
    elif order == "shuffled":
        random.Random(5).shuffle(keys)
    elif order == "reversed":
        keys.reverse()
    spool = SortedSpool(tmp_path, max_records=window)
    for k in keys:
        spool.push(k, f"record {k} ".encode() * (k % 7))
        assert spool.held <= window
    got = _drain(spool)
    assert [k for k, _ in got] == list(range(500))
    assert all(blob == f"record {k} ".encode() * (k % 7) for k, blob in got)
    assert 1 <= spool.runs <= max_runs
    assert list(spool.records()) == got  # readable again
    assert list(tmp_path.iterdir()) == []  # the file is anonymous
    spool.close()


def test_equal_negative_and_huge_keys_are_kept(tmp_path: Path) -> None:
    pushed = [(3, b"a"), (-2, b"b"), (3, b"c"), (0, b""), (-2, b"d"), (1, b"e"), (2**70, b"f"), (-(2**64), b"g"),
              (127, b"h"), (128, b"i"), (-128, b"j"), (-129, b"k")]
    spool = SortedSpool(tmp_path, max_records=2)
    for k, blob in pushed:
        spool.push(k, blob)
    got = _drain(spool)
    assert [k for k, _ in got] == sorted(k for k, _ in pushed)
    assert sorted(got) == sorted(pushed)
    spool.close()
    with pytest.raises(RuntimeError, match="after close"):
        list(spool.records())


def test_a_small_stream_stays_in_memory_and_the_byte_bound_spills(tmp_path: Path) -> None:
    small = SortedSpool(tmp_path, max_records=100)
    for k in (5, 1, 3):
        small.push(k, b"x")
    assert [k for k, _ in _drain(small)] == [1, 3, 5] and small.runs == 0
    big = SortedSpool(tmp_path, max_records=100, max_bytes=1000)
    for k in range(20):
        big.push(k, b"y" * 300)
        assert big.held <= 4
    assert [k for k, _ in _drain(big)] == list(range(20)) and big.runs == 1


def test_push_after_finish_is_refused(tmp_path: Path) -> None:
    spool = SortedSpool(tmp_path)
    spool.push(1, b"a")
    spool.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        spool.push(2, b"b")
    unfinished = SortedSpool(tmp_path)
    with pytest.raises(RuntimeError, match="before finish"):
        list(unfinished.records())
