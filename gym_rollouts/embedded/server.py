"""The aiohttp application: vLLM's HTTP routes over the fake engine, plus faults and admin.

`EmbeddedServer` is an async context manager that binds 127.0.0.1 (SO_REUSEADDR, so a restart
can take the same port), serves until closed, and exposes runtime controls (`set_faults`,
`set_fail_health`) and `stats()`. No per-request logging: this is the zero-latency backend the
throughput benchmark runs against.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections import Counter
from dataclasses import replace
from typing import Any, Callable

import orjson
from aiohttp import web

from gym_rollouts import __version__

from . import vllm_errors as E
from .config import BODY_FAULT_KINDS, EmbeddedConfig
from .engine import FakeEngine, Outcome
from .faults import DRIP_BYTE_INTERVAL_S, SLOW_FAULT_SECONDS, FaultInjector, corrupt_body
from .kv_sim import KVScheduler, KVTooSmall
from .metrics import ServerMetrics
from .sim_loop import SimLoop
from .weights import WeightControls, aborted_body

log = logging.getLogger(__name__)

_JSON = "application/json"
_METRICS_CT = "text/plain; version=0.0.4; charset=utf-8"
_NOT_FOUND = orjson.dumps({"detail": "Not Found"})
# extra /version field (vLLM answers only "version"): tells doctor this is not vLLM; value: our version
VERSION_MARKER = "gym_rollouts_embedded"


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


def _error(err: E.ErrorReply) -> web.Response:
    return web.Response(body=err.body(), status=err.status, content_type=_JSON)


class EmbeddedServer:
    """`async with EmbeddedServer(cfg) as srv:` -> `srv.base_url` ("http://127.0.0.1:P/v1")."""

    def __init__(self, cfg: EmbeddedConfig | None = None, **overrides: Any) -> None:
        cfg = cfg or EmbeddedConfig()
        self.cfg = replace(cfg, **overrides) if overrides else cfg
        self.engine = FakeEngine(self.cfg)
        self.faults = FaultInjector(self.cfg.fault_rate, self.cfg.fault_kinds, self.cfg.seed,
                                    retry_after=self.cfg.fault_retry_after)
        self.metrics = ServerMetrics(self.cfg.model_name, self.cfg.max_model_len, self.cfg.prefix_caching,
                                     self.cfg.prefix_cache_blocks)
        self.sim: SimLoop | None = None  # the simulated GPU (kv_sim.py), only when its flags ask for it
        if self.cfg.simulates_gpu:
            self.sim = SimLoop(KVScheduler(
                self.cfg.kv_cache_tokens, self.cfg.max_num_seqs, self.cfg.latency_per_token_ms / 1000.0,
                self.cfg.prefill_ms_per_token / 1000.0, self.metrics.prefix_lookup))
            self.metrics.attach_sim(self.sim)
        self.fail_health = self.cfg.fail_health
        self.weights = WeightControls()  # vLLM's dev-mode /pause, /resume, /weight_info (weights.py)
        self.requests: Counter[str] = Counter()
        self.authorization_seen: Counter[str] = Counter()  # sha256 of each Authorization header -> requests
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.cfg.host in ("", "0.0.0.0", "::") else self.cfg.host

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("server already started")
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self.build_app(),
            access_log=None,
            handler_cancellation=True,
            keepalive_timeout=self.cfg.keepalive_timeout,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.cfg.host, self.cfg.port))
            sock.listen(1024)
            sock.setblocking(False)
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._port = sock.getsockname()[1]
        self._runner = runner
        log.debug("embedded vLLM double serving %s at %s", self.cfg.model_name, self.base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._stopping is not None:
            self._stopping.set()  # releases "hang" faults
        await runner.cleanup()
        if self.sim is not None:
            await self.sim.close()

    async def __aenter__(self) -> "EmbeddedServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- runtime control ------------------------------------------------------------------------
    def set_faults(self, rate: float, kinds: Any = None) -> None:
        self.faults.configure(rate, kinds)

    def set_fail_health(self, fail: bool) -> None:
        self.fail_health = bool(fail)

    def stats(self) -> dict:
        return {
            "requests": dict(self.requests),
            "faults": self.faults.stats(),
            "fail_health": self.fail_health,
            "authorization_sha256": dict(self.authorization_seen),
            **self.metrics.stats(),
        }

    # -- application ----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._authorization_recorder()])
        engine = self.engine
        r = app.router
        r.add_get("/health", self._health)
        r.add_get("/version", self._version)
        r.add_get("/v1/models", self._models)
        r.add_get("/metrics", self._metrics)
        r.add_post("/v1/chat/completions", self._endpoint("chat", engine.chat))
        r.add_post("/v1/completions", self._endpoint("completions", engine.completion))
        r.add_post("/tokenize", self._simple("tokenize", engine.tokenize))
        r.add_post("/detokenize", self._simple("detokenize", engine.detokenize))
        r.add_post("/_admin/faults", self._admin_faults)
        r.add_get("/_admin/stats", self._admin_stats)
        self.weights.add_routes(r)
        r.add_route("*", "/{tail:.*}", self._not_found)
        return app

    def _authorization_recorder(self) -> Any:
        """Middleware counting each request's Authorization header by its SHA-256 (stats:
        ``authorization_sha256``): tests check which key a client sent without the server
        keeping the key itself."""

        @web.middleware
        async def record(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
            header = request.headers.get("Authorization")
            if header is not None:
                self.authorization_seen[hashlib.sha256(header.encode()).hexdigest()] += 1
            return await handler(request)

        return record

    async def _health(self, request: web.Request) -> web.Response:
        self.requests["health"] += 1
        return web.Response(status=503 if self.fail_health else 200)

    async def _version(self, request: web.Request) -> web.Response:
        self.requests["version"] += 1
        return _json(orjson.dumps({"version": self.cfg.version, VERSION_MARKER: __version__}))

    async def _models(self, request: web.Request) -> web.Response:
        self.requests["models"] += 1
        return _json(self.engine.models_body())

    async def _metrics(self, request: web.Request) -> web.Response:
        self.requests["metrics"] += 1
        return web.Response(text=self.metrics.render(), headers={"Content-Type": _METRICS_CT})

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests["not_found"] += 1
        return _json(_NOT_FOUND, 404)

    def _simple(self, name: str, fn: Callable[[bytes], bytes]):
        async def handler(request: web.Request) -> web.Response:
            self.requests[name] += 1
            raw = await request.read()
            fault = self.faults.draw()
            if fault is not None:
                injected = await self._inject(request, fault)
                if injected is not None:
                    return injected
            try:
                body = fn(raw)
            except E.ErrorReply as err:
                return _error(err)
            return _json(corrupt_body(fault, body) if fault in BODY_FAULT_KINDS else body)

        return handler

    def _endpoint(self, name: str, fn: Callable[[bytes], Outcome]):
        cfg, metrics, faults = self.cfg, self.metrics, self.faults
        base_delay = cfg.latency_ms / 1000.0
        per_token = cfg.latency_per_token_ms / 1000.0
        slots = asyncio.Semaphore(cfg.max_num_seqs) if cfg.max_num_seqs > 0 else None

        async def handler(request: web.Request) -> web.Response:
            self.requests[name] += 1
            metrics.running += 1
            try:
                raw = await request.read()
                fault = faults.draw()
                if fault is not None:
                    injected = await self._inject(request, fault)
                    if injected is not None:
                        metrics.requests_failed += 1
                        return injected
                try:
                    out = fn(raw)
                except E.ErrorReply as err:
                    metrics.requests_failed += 1
                    return _error(err)
                await self.weights.admit()  # paused (/pause): queued until /resume, as vLLM does
                delay = base_delay + per_token * out.completion_tokens
                aborted = False
                if self.sim is not None:
                    try:
                        aborted = not await self._simulated(out, base_delay)
                    except KVTooSmall as exc:
                        metrics.requests_failed += 1
                        return _error(E.bad_request(str(exc)))
                elif delay > 0:
                    if slots is not None:  # max_num_seqs: queue for a free slot first
                        await self._take_slot(slots)
                    tokens = len(out.prompt_ids) + out.completion_tokens
                    metrics.running_tokens += tokens
                    generation, finished = metrics.begin_generation(out.completion_tokens, delay), False
                    try:
                        aborted = not await self.weights.generate(delay)  # /pause?mode=abort: False
                        finished = not aborted
                    finally:
                        metrics.end_generation(generation, finished)
                        metrics.running_tokens -= tokens
                        if slots is not None:
                            slots.release()
                metrics.record(out.prompt_ids, out.completion_tokens)
                body = corrupt_body(fault, out.body) if fault in BODY_FAULT_KINDS else out.body
                if aborted:
                    body = aborted_body(out.body)
                if fault == "drip":
                    return await self._drip(request, body)
                return web.Response(body=body, content_type=_JSON)
            finally:
                metrics.running -= 1

        return handler

    async def _simulated(self, out: Outcome, base_delay: float) -> bool:
        """Through the simulated GPU (sim_loop.py): ``--latency-ms`` first, then queued, prefilled
        and generated step by step. False when ``/pause?mode=abort`` cut it short."""
        assert self.sim is not None
        if base_delay > 0:
            await asyncio.sleep(base_delay)
        self.metrics.running -= 1  # the scheduler counts it as running or waiting meanwhile
        try:
            run = self.sim.run(out.prompt_ids, max(1, out.completion_tokens), max(1, out.sequences))
            return await self.weights.generate(0.0, work=run)
        finally:
            self.metrics.running += 1

    async def _take_slot(self, slots: asyncio.Semaphore) -> None:
        """Wait for a generation slot, counted as waiting (not running) meanwhile."""
        self.metrics.running -= 1
        self.metrics.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.metrics.waiting -= 1
            self.metrics.running += 1

    async def _inject(self, request: web.Request, kind: str) -> web.StreamResponse | None:
        """Apply one fault. None means "carry on and answer normally"."""
        if kind in BODY_FAULT_KINDS or kind == "drip":
            return None  # answered normally; the body corrupted (corrupt_body) or dripped (_drip) afterwards
        if kind == "slow":
            await asyncio.sleep(SLOW_FAULT_SECONDS)
            return None
        if kind == "hang":
            assert self._stopping is not None
            await self._stopping.wait()
            return _error(E.fault(503))
        if kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # nothing may be written on the aborted connection
        if kind == "echo_auth":
            return _error(E.echo_authorization(request.headers.get("Authorization")))
        reply = _error(E.fault(int(kind)))
        if self.faults.retry_after is not None and kind in ("429", "503"):
            reply.headers["Retry-After"] = self.faults.retry_after
        return reply

    async def _drip(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """The "drip" fault: status and headers now, then ``body`` one byte per
        ``DRIP_BYTE_INTERVAL_S`` (until done, the client leaves, or the server stops)."""
        assert self._stopping is not None
        reply = web.StreamResponse(status=200, headers={"Content-Type": _JSON, "Content-Length": str(len(body))})
        await reply.prepare(request)
        try:
            for offset in range(len(body)):
                await reply.write(body[offset:offset + 1])
                if self._stopping.is_set():
                    break
                await asyncio.sleep(DRIP_BYTE_INTERVAL_S)
        except ConnectionError:
            pass
        return reply

    async def _admin_faults(self, request: web.Request) -> web.Response:
        self.requests["admin"] += 1
        try:
            body = orjson.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            if "rate" in body or "kinds" in body:
                self.faults.configure(body.get("rate", self.faults.rate), body.get("kinds"))
            if "fail_health" in body:
                self.set_fail_health(body["fail_health"])
            if "retry_after" in body:
                value = body["retry_after"]
                self.faults.retry_after = None if value is None else str(value)
        except (ValueError, TypeError) as exc:
            return _error(E.bad_request(str(exc)))
        return _json(orjson.dumps({"faults": self.faults.stats(), "fail_health": self.fail_health}))

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return _json(orjson.dumps(self.stats()))
