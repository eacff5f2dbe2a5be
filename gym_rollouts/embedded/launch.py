"""Run an embedded server as a child process (killable, restartable on the same port).

`embedded_subprocess(...)` (sync) and `launch_embedded(...)` (async) start
`python -m gym_rollouts.embedded ...`, wait for its `READY <url>` line and yield a handle with
`.base_url`, `.port`, `.pid`, `.kill()` (SIGKILL), `.terminate()` (SIGTERM) and `.restart()`
(start again on the same port). The child is always reaped on exit. `launch_fleet([...])` starts
several at once (e.g. simulated GPUs of different speeds and KV sizes, see kv_sim.py).

The handle is generic: `ServerProcess(argv, module=...)` runs any `python -m <module>` that
prints `READY <url>` once listening and accepts `--port` and `--parent-pid` (the embedded
resources server uses it too); `running(proc)` / `running_async(proc)` are the context managers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator, Iterator, Mapping, Sequence, Union

from .config import EmbeddedConfig, config_to_argv

ConfigLike = Union[EmbeddedConfig, Sequence[str], Mapping[str, object], None]

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
_READY = "READY "


class EmbeddedStartError(RuntimeError):
    """The child exited or stayed silent before printing its READY line."""


def _argv(cfg: ConfigLike) -> list[str]:
    if cfg is None:
        return []
    if isinstance(cfg, EmbeddedConfig):
        return config_to_argv(cfg)
    if isinstance(cfg, Mapping):
        return config_to_argv(EmbeddedConfig(**cfg))  # type: ignore[arg-type]
    if isinstance(cfg, str):
        raise TypeError("pass CLI arguments as a list of strings, not one string")
    return [str(a) for a in cfg]


class ServerProcess:
    """Blocking handle on one `python -m <module> ARGV` child process (see module doc)."""

    def __init__(self, argv: Sequence[str] = (), *, module: str, label: str = "server",
                 python: str = sys.executable, startup_timeout: float = 30.0) -> None:
        self.argv = [str(a) for a in argv]
        self.module = module
        self.label = label
        self.python = python
        self.startup_timeout = startup_timeout
        self.base_url: str = ""
        self.port: int = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    # -- properties -----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def stderr_tail(self, limit: int = 4000) -> str:
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - limit))
        return self._log.read().decode("utf-8", errors="replace")

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.alive:
            raise RuntimeError("already running")
        argv = list(self.argv)
        if self.port:
            argv += ["--port", str(self.port)]  # argparse: the last --port wins
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                self._spawn(argv, deadline)
                return
            except EmbeddedStartError:
                # A restart can race the old socket's release: retry while time remains.
                if not self.port or time.monotonic() + 0.2 > deadline:
                    raise
                time.sleep(0.1)

    def _spawn(self, argv: list[str], deadline: float) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [self.python, "-m", self.module, *argv, "--parent-pid", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, env=env,
            # own process group: a terminal's Ctrl-C reaches only the parent, which drains its
            # in-flight requests against this server before stopping it
            start_new_session=True,
        )
        self._proc = proc
        try:
            line = self._read_ready(proc, deadline)
        except BaseException:
            self._reap(kill=True)
            raise
        self.base_url = line[len(_READY):].strip()
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])

    def _read_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> str:
        assert proc.stdout is not None
        fd, buf = proc.stdout.fileno(), b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EmbeddedStartError(
                    f"{self.label} gave no READY line within {self.startup_timeout}s; "
                    f"stderr:\n{self.stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    proc.wait(timeout=5)
                    raise EmbeddedStartError(
                        f"{self.label} exited with code {proc.returncode} before READY; "
                        f"stderr:\n{self.stderr_tail()}")
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith(_READY):
            raise EmbeddedStartError(f"unexpected first line from {self.label}: {line!r}")
        return line

    def _reap(self, *, kill: bool, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL, then wait until the child is reaped."""
        self._reap(kill=True)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown), SIGKILL after `timeout` s; waits until reaped."""
        self._reap(kill=False, timeout=timeout)

    def restart(self) -> None:
        """Kill the child if it still runs, then start a new one on the same port."""
        self.kill()
        self.start()

    def close(self) -> None:
        self._reap(kill=False, timeout=5.0)
        self._log.close()


class EmbeddedProcess(ServerProcess):
    """Blocking handle on one embedded-server child process (see module doc)."""

    def __init__(self, cfg: ConfigLike = None, *, python: str = sys.executable,
                 startup_timeout: float = 30.0) -> None:
        super().__init__(_argv(cfg), module="gym_rollouts.embedded", label="embedded server",
                         python=python, startup_timeout=startup_timeout)


class AsyncServerProcess:
    """The async face of `ServerProcess`: kill/terminate/restart are coroutines."""

    def __init__(self, inner: ServerProcess) -> None:
        self.inner = inner

    url = property(lambda self: self.inner.url)
    base_url = property(lambda self: self.inner.base_url)
    root_url = property(lambda self: self.inner.root_url)
    port = property(lambda self: self.inner.port)
    pid = property(lambda self: self.inner.pid)
    alive = property(lambda self: self.inner.alive)
    returncode = property(lambda self: self.inner.returncode)

    def stderr_tail(self, limit: int = 4000) -> str:
        return self.inner.stderr_tail(limit)

    async def kill(self) -> None:
        await asyncio.to_thread(self.inner.kill)

    async def terminate(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.inner.terminate, timeout)

    async def restart(self) -> None:
        await asyncio.to_thread(self.inner.restart)


AsyncEmbeddedProcess = AsyncServerProcess  # the name callers of launch_embedded know


@contextlib.contextmanager
def running(proc: ServerProcess) -> Iterator[ServerProcess]:
    """`with running(ServerProcess(...)) as proc:` -> started now, stopped and reaped on exit."""
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


@contextlib.asynccontextmanager
async def running_async(proc: ServerProcess) -> AsyncIterator[AsyncServerProcess]:
    """The async `running`: yields the `AsyncServerProcess` face of `proc`."""
    try:
        await asyncio.to_thread(proc.start)
        yield AsyncServerProcess(proc)
    finally:
        await asyncio.to_thread(proc.close)


@contextlib.contextmanager
def embedded_subprocess(cfg_or_args: ConfigLike = None, *, python: str = sys.executable,
                        startup_timeout: float = 30.0) -> Iterator[EmbeddedProcess]:
    """`with embedded_subprocess(EmbeddedConfig(...)) as proc:` -> a running child."""
    with running(EmbeddedProcess(cfg_or_args, python=python, startup_timeout=startup_timeout)) as proc:
        yield proc  # type: ignore[misc]


@contextlib.asynccontextmanager
async def launch_embedded(cfg_or_args: ConfigLike = None, *, python: str = sys.executable,
                          startup_timeout: float = 30.0) -> AsyncIterator[AsyncServerProcess]:
    """`async with launch_embedded(cfg) as proc:` -> a running child (see module doc)."""
    proc = EmbeddedProcess(cfg_or_args, python=python, startup_timeout=startup_timeout)
    async with running_async(proc) as handle:
        yield handle


@contextlib.asynccontextmanager
async def launch_fleet(configs: Sequence[ConfigLike], *, python: str = sys.executable,
                       startup_timeout: float = 30.0) -> AsyncIterator[list[AsyncServerProcess]]:
    """`async with launch_fleet([cfg_fast, cfg_slow, ...]) as procs:` -> one running child per
    config (started together; all stopped on exit). For benchmarks of simulated GPU fleets:
    give each config its own `latency_per_token_ms`, `prefill_ms_per_token`, `kv_cache_tokens`."""
    procs = [EmbeddedProcess(cfg, python=python, startup_timeout=startup_timeout) for cfg in configs]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        yield [AsyncServerProcess(p) for p in procs]
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.close) for p in procs), return_exceptions=True)
