"""The listening part both embedded servers share: an aiohttp app bound to one loopback port.

`LoopbackSite` subclasses provide `build_app()`; `async with Sub(...) as srv:` binds `host:port`
(port 0: a free one; SO_REUSEADDR, so a restarted child can take the same port again at once),
exposes `srv.port` / `srv.url`, and on exit releases anything waiting on `srv.stopping` (the
"hang" fault) before closing the sockets. `json_response` is the JSON answer both use.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from aiohttp import web


def json_response(payload: Any, status: int = 200) -> web.Response:
    try:
        body = orjson.dumps(payload)
    except (orjson.JSONEncodeError, TypeError):  # e.g. an int beyond 64 bits echoed back by /verify
        body = json.dumps(payload).encode()
    return web.Response(body=body, status=status, content_type="application/json")


class LoopbackSite:
    """Lifecycle of one aiohttp application on one TCP port (see module doc)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bind_host = host
        self.bind_port = port
        self.stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.bind_host in ("", "0.0.0.0", "::") else self.bind_host

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("server already started")
        runner = web.AppRunner(self.build_app(), access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.bind_host, self.bind_port, reuse_address=True, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.stopping.set()
        await runner.cleanup()

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
