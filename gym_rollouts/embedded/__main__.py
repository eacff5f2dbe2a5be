"""`python -m gym_rollouts.embedded [flags]`: serve until SIGINT/SIGTERM.

Prints exactly one line, `READY http://127.0.0.1:<port>/v1`, to stdout (flushed) once the
socket is listening; launchers wait for it. Flags mirror `EmbeddedConfig` (see config.py).
`--parent-pid PID` (set by our launchers) makes the server exit when that process is gone, so a
`kill -9` of `collect` or of a test run never leaves an orphaned server behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any, Callable, Sequence

from .config import EmbeddedConfig, config_from_argv
from .server import EmbeddedServer


async def watch_parent(parent_pid: int, stop: asyncio.Event, every_s: float = 0.5) -> None:
    while not stop.is_set():
        if os.getppid() != parent_pid:  # re-parented: the launcher died without stopping us
            stop.set()
            return
        await asyncio.sleep(every_s)


async def serve_until_stopped(server: Any, url: Callable[[Any], str], parent_pid: int | None = None) -> None:
    """Run ``server`` (an async context manager) until SIGINT/SIGTERM or the launcher's death,
    printing ``READY <url(server)>`` once it listens (shared by both embedded servers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server as srv:
        sys.stdout.write(f"READY {url(srv)}\n")
        sys.stdout.flush()
        watcher = asyncio.create_task(watch_parent(parent_pid, stop)) if parent_pid else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()


async def serve(cfg: EmbeddedConfig, parent_pid: int | None = None) -> None:
    await serve_until_stopped(EmbeddedServer(cfg), lambda srv: srv.base_url, parent_pid)


def _pop_parent_pid(argv: list[str]) -> tuple[list[str], int | None]:
    if "--parent-pid" not in argv:
        return argv, None
    i = argv.index("--parent-pid")
    if i + 1 >= len(argv) or not argv[i + 1].isdigit():
        raise ValueError("--parent-pid needs a process id")
    return argv[:i] + argv[i + 2:], int(argv[i + 1])


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, parent_pid = _pop_parent_pid(list(sys.argv[1:] if argv is None else argv))
        cfg = config_from_argv(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(serve(cfg, parent_pid))
    else:
        uvloop.run(serve(cfg, parent_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
