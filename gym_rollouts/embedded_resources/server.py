"""The embedded resources server: NeMo Gym's resources-server HTTP protocol over aiohttp.

Served routes: `GET /` ({"status": "ok"}), `GET /openapi.json` (unless `openapi=False`), and the
POST routes of env.py. Every answer of a served route (404 and 422 included) carries the session
cookie `EmbeddedResourcesServer___<name>` (sessions.py). Unknown paths answer FastAPI's 404
`{"detail": "Not Found"}`, a wrong method its 405; a handler crash answers 500 with the
exception's repr as a JSON string, as NeMo Gym's exception middleware does.

Test controls under `/_control/` (no cookie, not logged, no faults):
  POST   /_control/faults    {"route", "mode", "count"?, "slow_ms"?}; GET: the table; DELETE: clear
  GET    /_control/requests  the last requests (`?limit=N`): method, path, cookie (the Cookie
                             header), session_id, new_session, body, raw (when not JSON), time,
                             fault; DELETE clears them
  GET    /_control/stats     sessions alive / issued, requests, in flight now and the most ever in
                             flight (per route and in total), the fault table and faults injected
In process: `async with EmbeddedResourcesServer(cfg) as srv: srv.url`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from . import env
from .config import ResourcesConfig
from .faults import Fault, FaultTable, parse_fault_spec
from .sessions import COOKIE_MAX_AGE_S, SessionSigner, SessionStore, cookie_name
from .site import LoopbackSite, json_response as _json
from .validation import ValidationFailed, error, parse_body

log = logging.getLogger(__name__)

UNKNOWN_ROUTE = "<unknown>"
_MALFORMED = b'{"injected_fault": "malformed", "reward": '
_RAW_LOG_LIMIT = 65536


class EmbeddedResourcesServer(LoopbackSite):
    """`async with EmbeddedResourcesServer(ResourcesConfig(...)) as srv:` (see module doc)."""

    def __init__(self, cfg: ResourcesConfig | None = None, **overrides: Any) -> None:
        cfg = cfg or ResourcesConfig()
        self.cfg = replace(cfg, **overrides) if overrides else cfg
        super().__init__(self.cfg.host, self.cfg.port)
        self.cookie_name = cookie_name(self.cfg.name)
        self.signer = SessionSigner()
        self.store = SessionStore()
        self.routes: dict[str, str] = {"/": "GET", **({"/openapi.json": "GET"} if self.cfg.openapi else {}),
                                       **{route: "POST" for route in env.HANDLERS}}
        self.faults = FaultTable(self.routes, self.cfg.slow_ms)
        for spec in self.cfg.faults:
            self.faults.set(*parse_fault_spec(spec))  # ValueError before anything listens
        self.log: deque[dict[str, Any]] = deque(maxlen=self.cfg.log_size)
        self.requests: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self._in_flight_total = 0
        self._max_in_flight_total = 0

    # -- application ----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/_control/faults", self._set_fault)
        r.add_get("/_control/faults", self._get_faults)
        r.add_delete("/_control/faults", self._clear_faults)
        r.add_get("/_control/requests", self._get_requests)
        r.add_delete("/_control/requests", self._clear_requests)
        r.add_get("/_control/stats", self._get_stats)
        r.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        expected = self.routes.get(path)
        key = path if expected is not None else UNKNOWN_ROUTE
        raw = await request.read()
        cookie = request.cookies.get(self.cookie_name)
        session_id, new = self.signer.resolve(cookie)
        entry = self._record(request, raw, session_id, new)
        self.requests[key] += 1
        self._enter(key)
        try:
            if self.cfg.latency_ms > 0:
                await asyncio.sleep(self.cfg.latency_ms / 1000.0)
            allowed = expected is not None and (method == expected or (expected == "GET" and method == "HEAD"))
            fault = self.faults.take(path) if allowed else None
            resp = None
            if fault is not None:
                entry["fault"] = fault.mode
                resp = await self._inject(request, fault)
            if resp is None:
                resp = self._answer(path, expected, allowed, raw, request.content_type, session_id)
            resp.set_cookie(self.cookie_name, self.signer.sign(session_id), path="/", max_age=COOKIE_MAX_AGE_S,
                            httponly=True, samesite="lax")
            return resp
        finally:
            self._leave(key)

    def _answer(self, path: str, expected: str | None, allowed: bool, raw: bytes, content_type: str,
                session_id: str) -> web.Response:
        if expected is None:
            return _json({"detail": "Not Found"}, 404)
        if not allowed:
            return web.Response(body=b'{"detail":"Method Not Allowed"}', status=405,
                                content_type="application/json", headers={"Allow": expected})
        if path == "/":
            return _json({"status": "ok"})
        if path == "/openapi.json":
            return _json(env.openapi_document("EmbeddedResourcesServer"))
        try:
            body = None if path in env.BODYLESS else parse_body(content_type, raw)
            return _json(env.HANDLERS[path](body, session_id, self.store))
        except ValidationFailed as exc:
            return _json(exc.body(), 422)
        except Exception as exc:  # a bug in the double must show, the way NeMo Gym shows it
            log.exception("embedded resources server: %s failed", path)
            return _json(repr(exc), 500)

    async def _inject(self, request: web.Request, fault: Fault) -> web.Response | None:
        """Apply one fault; None means "carry on and answer normally"."""
        mode = fault.mode
        if mode == "slow":
            await asyncio.sleep(fault.slow_ms / 1000.0)
            return None
        if mode == "hang":
            await self.stopping.wait()
            return _json({"detail": "server stopping"}, 503)
        if mode == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing may be written on the aborted connection
        if mode == "malformed":
            return web.Response(body=_MALFORMED, status=200, content_type="application/json")
        if mode == "422":
            return _json({"detail": [error("missing", ("body", "injected_fault"), {})]}, 422)
        return _json({"detail": f"injected fault: HTTP {mode}"}, int(mode))

    # -- bookkeeping ----------------------------------------------------------------------------
    def _record(self, request: web.Request, raw: bytes, session_id: str, new: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"method": request.method, "path": request.path,
                                 "cookie": request.headers.get("Cookie"), "session_id": session_id,
                                 "new_session": new, "body": None, "time": time.time(), "fault": None}
        if raw:
            try:
                entry["body"] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                entry["raw"] = raw[:_RAW_LOG_LIMIT].decode("utf-8", errors="replace")
        self.log.append(entry)
        return entry

    def _enter(self, key: str) -> None:
        self.in_flight[key] += 1
        self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])
        self._in_flight_total += 1
        self._max_in_flight_total = max(self._max_in_flight_total, self._in_flight_total)

    def _leave(self, key: str) -> None:
        self.in_flight[key] -= 1
        self._in_flight_total -= 1

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.cfg.name,
            "cookie_name": self.cookie_name,
            "sessions_alive": self.store.alive,
            "sessions_issued": self.signer.issued,
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "in_flight": {k: v for k, v in self.in_flight.items() if v},
            "in_flight_total": self._in_flight_total,
            "max_in_flight": dict(self.max_in_flight),
            "max_in_flight_total": self._max_in_flight_total,
            **self.faults.stats(),
        }

    # -- control routes -------------------------------------------------------------------------
    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return _json({"faults": self.faults.table()})

    async def _set_fault(self, request: web.Request) -> web.Response:
        try:
            self.faults.set_from_body(orjson.loads(await request.read() or b"null"))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"faults": self.faults.table()})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return _json({"faults": {}})

    async def _get_requests(self, request: web.Request) -> web.Response:
        limit = request.query.get("limit")
        if limit is not None and not limit.isdigit():
            return _json({"error": f"limit must be a non-negative integer, got {limit!r}"}, 400)
        entries = list(self.log)
        if limit is not None:
            entries = entries[-int(limit):] if int(limit) else []
        return _json(entries)

    async def _clear_requests(self, request: web.Request) -> web.Response:
        cleared = len(self.log)
        self.log.clear()
        return _json({"cleared": cleared})
