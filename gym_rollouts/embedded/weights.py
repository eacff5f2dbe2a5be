"""vLLM's dev-mode weight-update controls, as the embedded server serves them.

vLLM 0.32 with ``VLLM_SERVER_DEV_MODE=1`` serves (at the root) ``POST /pause?mode=abort|wait|keep``,
``POST /resume``, ``GET /is_paused``, ``POST /update_weight_version`` (``{"new_version": str}``)
and ``GET /weight_info``; the embedded server always serves them, behaving as vLLM does:

- while paused, new generation requests are queued (their answer comes after ``/resume``), not
  refused; ``/tokenize``, ``/health`` and ``/metrics`` answer as usual;
- ``abort``: generations in flight end now, answered 200 with ``finish_reason: "abort"`` (what
  vLLM sends for an aborted non-streamed request); ``wait``: ``/pause`` returns once they finished;
  ``keep``: they are frozen and answered after ``/resume``;
- a bad mode is a 400; ``/update_weight_version`` without ``new_version`` a 422 (FastAPI's);
- the version starts as ``"default"`` (vLLM's engine core default).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

import orjson
from aiohttp import web

from . import vllm_errors as E

MODES = ("abort", "wait", "keep")
INITIAL_VERSION = "default"
_JSON = "application/json"


def _json(content: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(content), status=status, content_type=_JSON)


class WeightControls:
    """Pause state, weight version and the generations in flight of one embedded server."""

    def __init__(self) -> None:
        self.version = INITIAL_VERSION
        self.mode: str | None = None  # the pause mode while paused
        self.aborted = 0
        self._open = asyncio.Event()
        self._open.set()
        self._running: set[asyncio.Task[Any]] = set()
        self._aborting: set[asyncio.Task[Any]] = set()

    @property
    def paused(self) -> bool:
        return self.mode is not None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/pause", self._pause)
        router.add_post("/resume", self._resume)
        router.add_get("/is_paused", self._is_paused)
        router.add_post("/update_weight_version", self._update_version)
        router.add_get("/weight_info", self._weight_info)

    async def admit(self) -> None:
        """Before a generation starts: wait while paused (vLLM queues new requests)."""
        if self.mode is not None:
            await self._open.wait()

    async def generate(self, delay: float, work: Awaitable[Any] | None = None) -> bool:
        """The generation's time (``delay``, or awaiting ``work``: the simulated GPU's run): False
        when ``/pause?mode=abort`` cut it short. With ``keep`` the answer waits for ``/resume``."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            if work is not None:
                await work
            elif delay > 0:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if task not in self._aborting or task.uncancel() > 0:
                raise
            return False
        finally:
            self._running.discard(task)
            self._aborting.discard(task)
        if self.mode == "keep":
            await self._open.wait()
        return True

    async def _pause(self, request: web.Request) -> web.Response:
        mode = request.query.get("mode", "abort")
        if mode not in MODES:
            return web.Response(body=E.bad_request(f"Input should be 'abort', 'wait' or 'keep'; got {mode!r}").body(),
                                status=400, content_type=_JSON)
        self.mode = mode
        self._open.clear()
        if mode == "abort":
            for task in list(self._running):
                self._aborting.add(task)
                task.cancel()
                self.aborted += 1
        if mode in ("abort", "wait"):
            while self._running:
                await asyncio.sleep(0.005)
        return _json({"status": "paused"})

    async def _resume(self, request: web.Request) -> web.Response:
        self.mode = None
        self._open.set()
        return _json({"status": "resumed"})

    async def _is_paused(self, request: web.Request) -> web.Response:
        return _json({"is_paused": self.paused})

    async def _update_version(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            body = None
        version = body.get("new_version") if isinstance(body, dict) else None
        if not isinstance(version, str):
            return _json({"detail": [{"type": "missing", "loc": ["body", "new_version"], "msg": "Field required"}]},
                         422)
        self.version = version
        return _json({"success": True, "new_version": version})

    async def _weight_info(self, request: web.Request) -> web.Response:
        return _json({"weight_version": self.version})


def aborted_body(body: bytes) -> bytes:
    """The answer of a generation aborted in flight: the same reply, ``finish_reason: "abort"``."""
    reply = orjson.loads(body)
    for choice in reply.get("choices") or ():
        choice["finish_reason"] = "abort"
    return orjson.dumps(reply)
