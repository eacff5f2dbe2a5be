"""The output sink: one writer thread owns every output file of the run.

Rows are handed over in batches (``put_many``; from the event loop through ``RowBuffer``, from the
reader thread directly): handing over wakes the writer thread, which costs far more than queueing,
so it happens once per batch. The writer serialises and appends them, each row one complete
``\\n``-terminated line, one ``write`` per file per wake-up (or per ~8 MiB of lines, so a large
batch never builds one huge buffer), fsynced about every second and on close. File I/O never
blocks the event loop. ``backlog`` (batches queued, not yet written) lets the engine apply
backpressure so memory cannot grow when the disk is slower than the fleet.

A write that fails (disk full, read-only file system, I/O error, file size limit, or a row that
cannot be serialised) never kills the writer silently: it becomes one ``SinkWriteError`` naming the
file and the cause, handed to ``on_error`` from the writer thread (the engine stops the run with
it), or else raised by the next ``put`` / ``close``. From then on nothing more is written: what is
on disk stays a prefix of what was handed over (the last line may be torn: resume repairs it), and
rows handed over later are dropped (with ``on_error``; they are not on disk, so a resume runs them
again) while the queue is still drained, so backpressure never waits on a writer that has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

import orjson

from gym_rollouts.io.os_errors import explain, is_write_failure

log = logging.getLogger(__name__)
_STOP = object()
_MAX_BATCH = 4096
_MAX_WRITE_BYTES = 8 << 20  # one write joins at most ~this much: memory stays bounded per wake-up
_NEWLINE = orjson.OPT_APPEND_NEWLINE


class SinkWriteError(RuntimeError):
    """The writer could not write ``path`` (None: not one file, e.g. a failed ``fsync`` round);
    ``cause`` is the error (an ``OSError`` for the file system, else a row it could not serialise)."""

    def __init__(self, path: Path | None, cause: BaseException) -> None:
        where = f"cannot write {path}: " if path is not None else ""
        detail = explain(cause) if isinstance(cause, OSError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"output writer failed: {where}{detail}")
        self.path = path
        self.cause = cause

    @property
    def is_file_system(self) -> bool:
        """Disk full, quota, read-only file system, I/O error or file size limit (see io/os_errors.py)."""
        return is_write_failure(self.cause)


class Sink:
    """Context manager; ``files`` maps a channel name to its output path (opened for append).
    ``on_error`` (called once, from the writer thread) receives the ``SinkWriteError`` that
    stopped the writer; without it, ``put`` / ``close`` raise it."""

    def __init__(self, files: dict[str, Path], *, fsync_every_s: float = 1.0,
                 on_error: Callable[[SinkWriteError], None] | None = None) -> None:
        self._paths = files
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="gym-rollouts-sink", daemon=True)
        self._handles: dict[str, BinaryIO] = {}
        self._error: SinkWriteError | None = None
        self._on_error = on_error
        self._fsync_every_s = fsync_every_s
        self.rows_written = {name: 0 for name in files}

    def __enter__(self) -> "Sink":
        try:
            for name, path in self._paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                self._handles[name] = path.open("ab", buffering=0)
        except BaseException:
            self._close_handles()
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backlog(self) -> int:
        """Batches handed over and not yet written."""
        return self._queue.qsize()

    @property
    def failure(self) -> SinkWriteError | None:
        """The error that stopped the writer, if any."""
        return self._error

    def put(self, channel: str, row: Any) -> None:
        self.put_many(channel, [row])

    def put_many(self, channel: str, rows: list[Any]) -> None:
        """Hand rows over (thread-safe; one writer wake-up per call). ``rows`` must not be reused."""
        if self._error is not None:
            if self._on_error is not None:
                return  # the owner was told and is stopping the run: these rows are run again on resume
            raise self._error
        self._queue.put((channel, rows))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._close_handles()
        if self._error is not None and self._on_error is None:
            raise self._error

    def _close_handles(self) -> None:
        for handle in self._handles.values():
            try:
                handle.close()
            except OSError:  # nothing is buffered (unbuffered files): a late error of the mount
                pass
        self._handles.clear()

    def _fail(self, path: Path | None, exc: BaseException) -> None:
        self._error = SinkWriteError(path, exc)
        if self._on_error is not None:
            try:
                self._on_error(self._error)
            except Exception:  # the callback must not end the writer: it still drains the queue
                log.exception("output writer: on_error failed")

    def _run(self) -> None:
        try:
            self._write_until_stopped()
        except BaseException as exc:  # noqa: BLE001 - anything else is a bug of ours: never die silently
            self._fail(None, exc)
        if self._error is not None:
            while self._queue.get() is not _STOP:  # drain: backlog falls to 0, close() can join
                pass

    def _write_until_stopped(self) -> None:
        """Write batches until ``_STOP`` (then fsync and return) or the first failure (recorded)."""
        last_sync = time.monotonic()
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
            channel = ""
            try:
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
                    for channel, handle in self._handles.items():
                        os.fsync(handle.fileno())
                    last_sync = time.monotonic()
            except Exception as exc:
                self._fail(self._paths.get(channel), exc)
                if any(entry is _STOP for entry in batch):
                    self._queue.put(_STOP)  # already taken from the queue: the drain ends on it
                return
            if stop:
                return


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
