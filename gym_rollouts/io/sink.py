"""The output sink: one writer thread owns every output file of the run.

Workers hand finished rows to ``Sink.put_*`` (non-blocking, from the event loop); a dedicated
thread serialises and appends them, each row one complete ``\\n``-terminated line written with a
single ``write`` call, flushed after every batch. File I/O never blocks the event loop.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, BinaryIO

import orjson

_STOP = object()


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

    def put(self, channel: str, row: Any) -> None:
        if self._error is not None:
            raise RuntimeError(f"output writer failed: {self._error}") from self._error
        self._queue.put((channel, row))

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
        import time

        last_sync = time.monotonic()
        try:
            while True:
                item = self._queue.get()
                batch = [item]
                while True:  # drain what is already queued: one write per file per batch
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                chunks: dict[str, list[bytes]] = {}
                for entry in batch:
                    if entry is _STOP:
                        stop = True
                        continue
                    channel, row = entry
                    chunks.setdefault(channel, []).append(orjson.dumps(row) + b"\n")
                    self.rows_written[channel] += 1
                for channel, lines in chunks.items():
                    _write_all(self._handles[channel], b"".join(lines))
                if time.monotonic() - last_sync > self._fsync_every_s:
                    for handle in self._handles.values():
                        os.fsync(handle.fileno())
                    last_sync = time.monotonic()
                if stop:
                    for handle in self._handles.values():
                        os.fsync(handle.fileno())
                    return
        except BaseException as exc:  # surfaced to the event loop on the next put/close
            self._error = exc


def _write_all(handle: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        view = view[written:]
