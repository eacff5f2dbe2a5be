"""The writer thread: complete lines, in order per file, everything flushed on close."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from gym_rollouts.io.sink import Sink


def test_rows_from_two_threads_land_as_complete_lines(tmp_path: Path) -> None:
    paths = {"rows": tmp_path / "out.jsonl", "side": tmp_path / "side.jsonl"}
    with Sink(paths) as sink:
        def feed(channel: str) -> None:
            for i in range(2000):
                sink.put(channel, {"i": i, "pad": "x" * (i % 50)})
        threads = [threading.Thread(target=feed, args=(c,)) for c in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for path in paths.values():
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert [r["i"] for r in rows] == list(range(2000))  # one producer per file: its order is kept
    assert sink.rows_written == {"rows": 2000, "side": 2000}
    assert sink.backlog == 0


def test_appends_to_existing_files(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"old":1}\n')
    with Sink({"rows": path}) as sink:
        sink.put("rows", {"new": 2})
    assert path.read_bytes() == b'{"old":1}\n{"new":2}\n'


def test_a_writer_failure_surfaces(tmp_path: Path) -> None:
    sink = Sink({"rows": tmp_path / "out.jsonl"})
    with pytest.raises(RuntimeError, match="output writer failed"):
        with sink:
            sink.put("rows", {"bad": object()})  # orjson cannot serialise it
            sink._thread.join(timeout=5)
            sink.put("rows", {"ok": 1})


def test_a_large_batch_is_written_in_bounded_chunks_of_whole_lines(tmp_path: Path, monkeypatch) -> None:
    import gym_rollouts.io.sink as sink_module

    writes: list[bytes] = []
    real_write_all = sink_module._write_all
    monkeypatch.setattr(sink_module, "_MAX_WRITE_BYTES", 1000)
    monkeypatch.setattr(sink_module, "_write_all", lambda handle, data: (writes.append(data),
                                                                          real_write_all(handle, data)))
    path = tmp_path / "out.jsonl"
    rows = [{"i": i, "pad": "y" * 30} for i in range(300)]
    with Sink({"rows": path}) as sink:
        sink.put_many("rows", rows)
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == rows
    assert len(writes) > 1 and max(map(len, writes)) < 1000 + 100  # bounded: at most one line past
    assert all(w.endswith(b"\n") for w in writes)
