"""`python -m gym_rollouts.embedded [flags]`: serve until SIGINT/SIGTERM.

Prints exactly one line, `READY http://127.0.0.1:<port>/v1`, to stdout (flushed) once the
socket is listening; launchers wait for it. Flags mirror `EmbeddedConfig` (see config.py).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Sequence

from .config import EmbeddedConfig, config_from_argv
from .server import EmbeddedServer


async def serve(cfg: EmbeddedConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with EmbeddedServer(cfg) as srv:
        sys.stdout.write(f"READY {srv.base_url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config_from_argv(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(serve(cfg))
    else:
        uvloop.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
