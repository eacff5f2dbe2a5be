"""A spool of serialized records that come in roughly key order and go out in exact key order.

Used for the per-task entries of the aggregate metrics (``group_level_metrics``): tasks close
in completion order (concurrency, repeats, resume), the file wants them in task order, and memory
must stay bounded whatever the number of tasks. Records wait in a bounded in-memory window (a
heap: at most ``max_records`` records and ``max_bytes`` bytes); when it is full the smallest goes
to a temporary file (replacement selection): the file holds sorted runs, a new run starting
whenever a record arrives smaller than the last one written. Completion order is nearly sorted,
so a run is as long as the whole stream in the common case and the window only has to absorb
the disorder. Reading merges the runs (``heapq.merge`` over one buffered reader per run, all on one
file descriptor via ``os.pread``). Memory: the window plus one read buffer per run.

The temporary file is anonymous (``tempfile.TemporaryFile``: no name left behind, even on a crash)
and created on first need in ``directory`` (next to the output; the system's temp dir when None).
"""

from __future__ import annotations

import heapq
import os
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

_HEADER = struct.Struct("<BI")  # key length, record length; then the key (signed, little-endian), the record
READ_BUDGET = 4 << 20  # bytes of read buffers shared by the runs when merging
MAX_CHUNK = 256 << 10  # one read (a buffer is re-cut on each read: keep them small)
MIN_CHUNK = 16 << 10


class SortedSpool:
    """``push(key, blob)`` in any order, then ``finish()``, then ``records()`` in key order (equal
    keys in push order among records of one run)."""

    def __init__(self, directory: Path | None = None, *, max_records: int = 1024, max_bytes: int = 8 << 20) -> None:
        self.directory = directory
        self.max_records, self.max_bytes = max_records, max_bytes
        self._heap: list[tuple[int, int, int, bytes]] = []  # (run, key, push order, blob)
        self._held_bytes = 0
        self._pushed = 0
        self._run = 0
        self._last: int | None = None  # key written last in the current run
        self._file: BinaryIO | None = None
        self._runs: list[tuple[int, int]] = []  # finished runs: (start, end) byte offsets
        self._run_start = 0
        self._finished = False
        self._closed = False
        self.count = 0

    def push(self, key: int, blob: bytes) -> None:
        if self._finished:
            raise RuntimeError("SortedSpool.push after finish()")
        run = self._run if self._last is None or key >= self._last else self._run + 1
        item, heap = (run, key, self._pushed, blob), self._heap
        self._pushed += 1
        self._held_bytes += len(blob)
        self.count += 1
        if len(heap) >= self.max_records:  # the window is full (the steady state): one in, the smallest out
            self._emit(heapq.heappushpop(heap, item))
        else:
            heapq.heappush(heap, item)
        while len(heap) > self.max_records or (self._held_bytes > self.max_bytes and len(heap) > 1):
            self._emit(heapq.heappop(heap))

    @property
    def held(self) -> int:
        """Records waiting in memory."""
        return len(self._heap)

    @property
    def runs(self) -> int:
        return len(self._runs) + (1 if self._file is not None and self._file.tell() > self._run_start else 0)

    def _emit(self, item: tuple[int, int, int, bytes]) -> None:
        run, key, _, blob = item
        self._held_bytes -= len(blob)
        fh = self._open()
        if run != self._run:  # every record of the current run is out: the next run begins
            self._end_run()
            self._run = run
        width = (key.bit_length() + 8) // 8  # any int: task indices come from the input as they are
        fh.write(_HEADER.pack(width, len(blob)) + key.to_bytes(width, "little", signed=True))
        fh.write(blob)
        self._last = key

    def _open(self) -> BinaryIO:
        if self._file is None:
            directory = self.directory if self.directory is not None and self.directory.is_dir() else None
            self._file = tempfile.TemporaryFile(prefix=".gym_rollouts_spool_", dir=directory, buffering=256 << 10)
        return self._file

    def _end_run(self) -> None:
        assert self._file is not None
        end = self._file.tell()
        if end > self._run_start:
            self._runs.append((self._run_start, end))
        self._run_start = end

    def finish(self) -> None:
        """No more pushes: what the window holds goes to the file when it is not the only thing
        there (else it stays in memory: a small stream never touches the disk)."""
        if self._finished:
            return
        self._finished = True
        if self._file is None:
            self._heap.sort()
            return
        while self._heap:
            self._emit(heapq.heappop(self._heap))
        self._end_run()
        self._file.flush()

    def records(self) -> Iterator[tuple[int, bytes]]:
        """(key, blob) in key order; can be called again (each call reads the file afresh)."""
        if not self._finished or self._closed:
            raise RuntimeError(f"SortedSpool.records {'after close()' if self._closed else 'before finish()'}")
        if self._file is None:
            yield from ((key, blob) for _, key, _, blob in self._heap)
            return
        fd = self._file.fileno()
        chunk = min(MAX_CHUNK, max(MIN_CHUNK, READ_BUDGET // max(1, len(self._runs))))
        readers = [_read_run(fd, start, end, chunk) for start, end in self._runs]
        if len(readers) == 1:
            yield from readers[0]
        else:
            yield from heapq.merge(*readers, key=lambda rec: rec[0])

    def close(self) -> None:
        """Release the file and the window; ``records`` refuses from now on."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._heap = []
        self._closed = True


def _read_run(fd: int, start: int, end: int, chunk: int) -> Iterator[tuple[int, bytes]]:
    """The records of one run, read ``chunk`` bytes at a time with ``os.pread`` (no shared file
    position, so any number of runs can be read side by side on one descriptor)."""
    buf, at, pos, head = b"", 0, start, _HEADER.size

    def fill(need: int) -> None:
        nonlocal buf, at, pos
        while len(buf) - at < need:
            more = os.pread(fd, min(max(chunk, need), end - pos), pos) if pos < end else b""
            if not more:
                raise OSError(f"spool file truncated in the run at bytes {start}..{end}")
            pos += len(more)
            buf, at = buf[at:] + more, 0

    while at < len(buf) or pos < end:
        fill(head)
        width, length = _HEADER.unpack_from(buf, at)
        fill(head + width + length)
        body = at + head + width
        yield int.from_bytes(buf[at + head:body], "little", signed=True), buf[body:body + length]
        at = body + length
