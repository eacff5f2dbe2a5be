"""One output, one writer: an OS lock on ``<stem>_run.lock`` beside the output, held for the run.

``flock`` on the lock file, so the OS releases it on any exit of its holder, ``kill -9`` included.
The file records who holds it (pid, host, start time, command line) for the message a second
writer gets; that one refuses at once (``OutputInUseError``, a ``ConfigError``: exit 2). A lock
file left behind by a dead process does not block: nobody holds its lock, so the next run takes it
and records itself. Locks of different outputs are independent (each job of a multirun locks its
own), and the lock is per open file, so a second lock of one output in the same process is refused
as well.

The holder removes the file when it lets go (while still holding the lock). A process that opened
the file just before that removal and then got its lock notices that the file it locked is no
longer the one at the path, and starts over on the new one, so two processes never both believe
they hold one output's lock. Writing the record is also the first write into the output folder:
a full disk or a read-only file system is found here, before any server is contacted.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gym_rollouts.errors import ConfigError
from gym_rollouts.io.os_errors import explain

log = logging.getLogger(__name__)
_TAKE_ATTEMPTS = 20  # starting over on a file removed under us: each round needs a release in between
_MAX_RECORD_BYTES = 64 << 10


class OutputInUseError(ConfigError):
    """Another live process holds the output's lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a lock, as its file records it; fields missing in it are None."""

    pid: int | None = None
    host: str | None = None
    started_at: float | None = None
    command: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> "LockHolder":
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError:
            return cls()
        if not isinstance(record, dict):
            return cls()

        def typed(key: str, kind: type | tuple[type, ...]) -> Any:
            value = record.get(key)
            return value if isinstance(value, kind) and not isinstance(value, bool) else None

        return cls(pid=typed("pid", int), host=typed("host", str), started_at=typed("started_at", (int, float)),
                   command=typed("command", str))

    def describe(self, now: float | None = None) -> str:
        """``pid 4242 on host gpu1 (this host), running since 2025-06-01 12:00:03 CEST (35 s ago),
        command: collect ...``; what the record lacks is left out."""
        if self.pid is None:
            return "a process that has not recorded itself yet (it is starting, or is not a collect)"
        parts = [f"pid {self.pid}"]
        if self.host is not None:
            here = self.host == socket.gethostname()
            parts.append(f"on host {self.host}" + (" (this host)" if here else " (another host: the output is on a "
                                                                              "shared file system)"))
            if here and not _running(self.pid):
                parts.append("(no longer running: a process it started may hold the lock)")
        text = " ".join(parts)
        if self.started_at is not None:
            ago = max(0.0, (now if now is not None else time.time()) - self.started_at)
            when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started_at))
            text += f", running since {when} ({_duration(ago)} ago)"
        if self.command:
            text += f", command: {self.command}"
        return text


class OutputLock:
    """Context manager: hold ``path`` (the output's ``<stem>_run.lock``) for the run on ``rows``."""

    def __init__(self, path: Path, *, rows: Path, command: str | None = None) -> None:
        self.path = path
        self.rows = rows
        # sys.argv: the command line as cli/app.py hands it to Hydra (literal secrets already replaced
        # by references, config/secret_overrides.py), so the lock file never holds a key
        self.command = command if command is not None else shlex.join(sys.argv)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise (``OutputInUseError`` naming the holder; ``ConfigError`` when the
        folder cannot hold a lock file: read-only, full, not writable, no lock support)."""
        for _ in range(_TAKE_ATTEMPTS):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.parse(_read(fd))
                os.close(fd)
                raise OutputInUseError(
                    f"{self.rows} is being written by another collect: {holder.describe()}. Two writers of one "
                    f"output would duplicate its rows. Wait for that run to end (or stop it"
                    f"{f': kill {holder.pid}' if holder.pid is not None else ''}), or choose another "
                    f"output_jsonl_fpath. (Its lock: {self.path}; the OS releases it when that process exits, "
                    f"however it exits.)") from None
            except OSError as exc:
                os.close(fd)
                raise ConfigError(f"cannot lock {self.path} (one writer per output): {explain(exc)}") from None
            if _is_at(fd, self.path):
                break
            os.close(fd)  # its holder removed the file while we waited for it: lock the new one
        else:
            raise ConfigError(f"cannot lock {self.path}: it was replaced {_TAKE_ATTEMPTS} times while collect tried "
                              f"to lock it; is something else removing it? Retry, or choose another output_jsonl_fpath")
        self._fd = fd
        try:
            self._record()
        except OSError as exc:
            self.release()
            raise ConfigError(f"cannot write in the output folder {self.path.parent} (output_jsonl_fpath="
                              f"{self.rows}): {explain(exc)}") from None
        log.debug("locked %s", self.path)

    def release(self) -> None:
        """Remove the lock file (still holding it) and let go. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _is_at(fd, self.path):
                self.path.unlink()
        except OSError as exc:  # a read-only remount, ...: the next holder simply takes the file over
            log.debug("could not remove %s: %s", self.path, exc)
        finally:
            os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create files in the output folder {self.path.parent} (output_jsonl_fpath="
                              f"{self.rows}): {explain(exc)}") from None

    def _record(self) -> None:
        assert self._fd is not None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
                  "command": self.command, "output": str(self.rows)}
        os.ftruncate(self._fd, 0)
        data = orjson.dumps(record) + b"\n"
        written = os.pwrite(self._fd, data, 0)
        if written != len(data):  # a short write: the disk filled up exactly now
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(self._fd)  # some file systems report a full disk only here


def _read(fd: int) -> bytes:
    try:
        return os.pread(fd, _MAX_RECORD_BYTES, 0)
    except OSError:
        return b""


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path``."""
    opened = os.fstat(fd)
    try:
        current = os.stat(path)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
