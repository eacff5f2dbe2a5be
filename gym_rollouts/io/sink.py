"""The output sink: one writer thread owns every output file of the run.

Rows are handed over in batches (``put_many``; from the event loop through ``RowBuffer``, from the
reader thread directly): handing over wakes the writer thread, which costs far more than queueing,
so it happens once per batch. The writer serialises and appends them, each row one complete
``\\n``-terminated line, one ``write`` per file per wake-up (or per ~8 MiB of lines, so a large
batch never builds one huge buffer), fsynced about every second and on close. File I/O never
blocks the event loop. ``backlog`` (batches queued, not yet written) lets the engine apply
backpressure so memory cannot grow when the disk is slower than the fleet.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import orjson

_STOP = object()
_MAX_BATCH = 4096
_MAX_WRITE_BYTES = 8 << 20  # one write joins at most ~this much: memory stays bounded per wake-up
_NEWLINE = orjson.OPT_APPEND_NEWLINE


class Sink:
    """Context manager; ``files`` maps a channel name to its output path (opened for append)."""

    def __init__(self, files: dict[str, Path], *, fsync_every_s: float = 1.0) -> None:
        self._paths = files
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="gym-rollouts-sink", daemon=True)
        self._handles: dict[str, BinaryIO] = {}
        self._error: BaseException | None = None
        self._fsync_every_s = fsync_every_s
        self.rows_written = {name: 0 for name in files}

    def __enter__(self) -> "Sink":
        for name, path in self._paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handles[name] = path.open("ab", buffering=0)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backlog(self) -> int:
        """Batches handed over and not yet written."""
        return self._queue.qsize()

    def put(self, channel: str, row: Any) -> None:
        self.put_many(channel, [row])

    def put_many(self, channel: str, rows: list[Any]) -> None:
        """Hand rows over (thread-safe; one writer wake-up per call). ``rows`` must not be reused."""
        if self._error is not None:
            raise RuntimeError(f"output writer failed: {self._error}") from self._error
        self._queue.put((channel, rows))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._error is not None:
            raise RuntimeError(f"output writer failed: {self._error}") from self._error

    def _run(self) -> None:
        last_sync = time.monotonic()
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < _MAX_BATCH:  # drain what is queued: one write per file per batch
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                chunks: dict[str, list[bytes]] = {}
                pending: dict[str, int] = {}  # bytes in chunks[channel]
                for entry in batch:
                    if entry is _STOP:
                        stop = True
                        continue
                    channel, rows = entry
                    lines = chunks.setdefault(channel, [])
                    for row in rows:
                        lines.append(orjson.dumps(row, option=_NEWLINE))
                        size = pending.get(channel, 0) + len(lines[-1])
                        if size >= _MAX_WRITE_BYTES:
                            _write_all(self._handles[channel], b"".join(lines))
                            lines.clear()
                            size = 0
                        pending[channel] = size
                    self.rows_written[channel] += len(rows)
                for channel, lines in chunks.items():
                    if lines:
                        _write_all(self._handles[channel], b"".join(lines))
                if stop or time.monotonic() - last_sync > self._fsync_every_s:
                    for handle in self._handles.values():
                        os.fsync(handle.fileno())
                    last_sync = time.monotonic()
                if stop:
                    return
        except BaseException as exc:  # surfaced to the event loop on the next put/close
            self._error = exc


class RowBuffer:
    """Event-loop side of the sink: collects rows and hands them over in batches (at
    ``max_rows``, or ``max_delay_s`` after the first row of a batch), so the writer thread wakes
    once per batch instead of once per row. Use from the event loop only; ``flush`` on exit."""

    def __init__(self, sink: Sink, *, max_rows: int = 64, max_delay_s: float = 0.02) -> None:
        self._sink = sink
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._rows: dict[str, list[Any]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def backlog(self) -> int:
        return self._sink.backlog

    def put(self, channel: str, row: Any) -> None:
        rows = self._rows.get(channel)
        if rows is None:
            rows = self._rows[channel] = []
        rows.append(row)
        self._count += 1
        if self._count >= self._max_rows:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_delay_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for channel, rows in self._rows.items():
            if rows:
                self._sink.put_many(channel, rows)
        self._rows = {}
        self._count = 0


def _write_all(handle: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        view = view[written:]
