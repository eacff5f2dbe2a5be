"""`python -m gym_rollouts.embedded_resources [flags]`: serve until SIGINT/SIGTERM.

Prints exactly one line, `READY http://127.0.0.1:<port>`, to stdout (flushed) once the socket is
listening; launchers wait for it. Without `--head` it is a resources server (server.py; flags in
config.py: --host --port --name --fault ROUTE=MODE[:COUNT] --no-openapi --latency-ms --slow-ms
--log-size); with `--head` a head-server stand-in (head.py: --env NAME=URL --env-type NAME=IMPL
--agent AGENT=ENV --agent-type AGENT=TYPE). `--parent-pid PID` (set by our launchers) makes it
exit when that process is gone. Bad flags: a message on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Sequence

from gym_rollouts.embedded.__main__ import serve_until_stopped

from .config import HeadConfig, ResourcesConfig, parse_argv
from .head import HeadServer
from .server import EmbeddedResourcesServer


def build(cfg: ResourcesConfig | HeadConfig) -> EmbeddedResourcesServer | HeadServer:
    return HeadServer(cfg) if isinstance(cfg, HeadConfig) else EmbeddedResourcesServer(cfg)


async def serve(srv: EmbeddedResourcesServer | HeadServer, parent_pid: int | None = None) -> None:
    await serve_until_stopped(srv, lambda running: running.url, parent_pid)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg, parent_pid = parse_argv(list(sys.argv[1:] if argv is None else argv))
        srv = build(cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(srv, parent_pid))
    except OSError as exc:  # e.g. the port is taken
        print(f"error: cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
