"""One pooled aiohttp client for the whole run: timeouts, keep-alive, error mapping.

- One ``ClientSession`` + ``TCPConnector`` sized to the run's concurrency, and a small separate
  one for control traffic (``/health`` probes, ``/metrics`` polls: ``get(..., control=True)``),
  so a probe never waits for a pool slot behind generation requests (nor behind a hung server's).
- Timeouts: ``connect_timeout_s`` bounds the TCP connect; ``read_timeout_s`` bounds the wait for
  each read of the answer (vLLM sends a non-streamed answer in one go, so this is the longest a
  generation may take). A call may pass ``timeout_s`` to bound it in total instead (probes).
- Client keep-alive (``keepalive_s``) below vLLM's 5 s server keep-alive. Should the server still
  close a pooled socket just as we reuse it, the request is retried once on a fresh connection;
  this happens only when the failing connection was a *reused* one (seen through aiohttp's
  tracing hooks), so a server that drops a fresh connection is reported, not retried here.
- Every failure becomes one of our errors: ``TransportError`` (kind ``connect`` / ``timeout`` /
  ``disconnected``), ``ServerStatusError`` (non-2xx, with the body), ``ProtocolError`` (2xx, not
  JSON). Retries across servers live in the router; this module only maps and reports.
- No cookie jar: nothing a server sets is ever sent back by the session itself (a shared jar would
  leak one rollout's environment session into every other rollout). A caller that needs a cookie
  (a NeMo Gym environment's per-rollout session) reads ``Answer.cookies`` and sends it explicitly.
- ``api_key`` becomes an ``Authorization`` header of this transport's sessions only: the run keeps
  environments on a transport of their own, without the policy's key.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping

import aiohttp
import orjson

from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.errors import ProtocolError, ServerStatusError, TransportError

log = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json"}
VLLM_SERVER_KEEPALIVE_S = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, whatever its status: the raw body and the cookies it sets."""

    status: int
    body: bytes
    cookies: dict[str, str]


class _Attempt:
    """Per-request tracing context: did this request go out on a reused pooled socket?"""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


async def _on_reuse(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if isinstance(ctx.trace_request_ctx, _Attempt):
        ctx.trace_request_ctx.reused = True


async def _on_create(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if isinstance(ctx.trace_request_ctx, _Attempt):
        ctx.trace_request_ctx.reused = False


class HttpTransport:
    """Async context manager owning the run's HTTP session."""

    def __init__(self, cfg: TransportConfig, *, concurrency: int, api_key: str | None = None,
                 extra_connections: int = 16) -> None:
        self._cfg = cfg
        self._limit = max(8, concurrency + extra_connections)
        self._headers = dict(_JSON_HEADERS)
        if api_key and api_key != "EMPTY":
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._control: aiohttp.ClientSession | None = None
        self.stale_socket_retries = 0
        if cfg.keepalive_s >= VLLM_SERVER_KEEPALIVE_S:
            log.warning("transport.keepalive_s=%s is not below vLLM's %ss server keep-alive: pooled "
                        "sockets will often be closed by the server before reuse", cfg.keepalive_s,
                        VLLM_SERVER_KEEPALIVE_S)

    async def __aenter__(self) -> "HttpTransport":
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=0, keepalive_timeout=self._cfg.keepalive_s, ttl_dns_cache=300,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._cfg.connect_timeout_s, sock_read=self._cfg.read_timeout_s,
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_reuseconn.append(_on_reuse)
        tracing.on_connection_create_end.append(_on_create)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self._headers, auto_decompress=True,
            trace_configs=[tracing], cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._control = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=self._cfg.keepalive_s),
            timeout=timeout, headers=self._headers, trace_configs=[tracing], cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in (self._session, self._control):
            if session is not None:
                await session.close()
        self._session = self._control = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpTransport used outside its 'async with' block")
        return self._session

    def stats(self) -> dict[str, Any]:
        return {"stale_socket_retries": self.stale_socket_retries, "connection_limit": self._limit}

    async def post_json(self, url: str, body: Mapping[str, Any], *, server: str | None = None,
                        timeout_s: float | None = None) -> Any:
        """POST ``body`` as JSON, return the decoded JSON answer or raise one of our errors."""
        data = orjson.dumps(body)
        status, raw, _ = await self._send("POST", url, data, server or url, timeout_s)
        if status >= 300:
            text = raw.decode("utf-8", "replace")
            raise ServerStatusError(status, text, server=server or url, message=error_message(text))
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{server or url} answered {status} with a body that is not JSON: {exc}") from None

    async def post(self, url: str, data: bytes, *, server: str | None = None, timeout_s: float | None = None,
                   headers: Mapping[str, str] | None = None) -> Answer:
        """POST raw JSON bytes; the answer whatever its status (only transport failures raise)."""
        status, raw, cookies = await self._send("POST", url, data, server or url, timeout_s, headers=headers)
        return Answer(status, raw, cookies)

    async def get(self, url: str, *, timeout_s: float | None = None, control: bool = False) -> tuple[int, bytes]:
        """GET returning (status, body); transport failures raise ``TransportError``.
        ``control=True`` sends it on the control session (probes and polls)."""
        status, raw, _ = await self._send("GET", url, None, url, timeout_s, control=control)
        return status, raw

    async def _send(self, method: str, url: str, data: bytes | None, server: str, timeout_s: float | None, *,
                    control: bool = False, headers: Mapping[str, str] | None = None
                    ) -> tuple[int, bytes, dict[str, str]]:
        session = self.session
        if control and self._control is not None:
            session = self._control
        # No ``timeout`` argument = the session's (connect + read); ``timeout=None`` would mean none at all.
        extra: dict[str, Any] = {}
        if headers:
            extra["headers"] = headers
        if timeout_s:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self._cfg.connect_timeout_s)
        limits = (self._cfg.connect_timeout_s, timeout_s or self._cfg.read_timeout_s)  # for error messages
        for retry in (False, True):
            attempt = _Attempt()
            try:
                async with session.request(method, url, data=data, trace_request_ctx=attempt, **extra) as resp:
                    raw = await resp.read()
                    cookies = ({name: morsel.value for name, morsel in resp.cookies.items()}
                               if "Set-Cookie" in resp.headers else {})  # .cookies builds a SimpleCookie per call
                    return resp.status, raw, cookies
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                stale = attempt.reused and not isinstance(exc, aiohttp.ClientConnectorError)
                if stale and not retry:
                    self.stale_socket_retries += 1
                    log.debug("%s %s: pooled socket closed by the server (%s); retrying once", method, url, exc)
                    continue
                raise _map_error(exc, server, *limits) from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise _map_error(exc, server, *limits) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _map_error(exc: BaseException, server: str, connect_s: float, answer_s: float) -> TransportError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError(f"connecting to {server} timed out ({connect_s:g}s)", server=server, kind="connect")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect to {server}: {exc.os_error or exc}", server=server, kind="connect",
                              reason=_connect_reason(exc))
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportError(f"no answer from {server} within {answer_s:g}s", server=server, kind="timeout")
    return TransportError(f"connection to {server} lost: {type(exc).__name__}: {exc}", server=server,
                          kind="disconnected")


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str | None:
    """"refused" (nothing listens there), "dns" (host name unknown) or None (anything else)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(exc.os_error, socket.gaierror):
        return "dns"
    if isinstance(exc.os_error, ConnectionRefusedError) or exc.os_error.errno == errno.ECONNREFUSED:
        return "refused"
    return None


def error_message(body: str) -> str:
    """The human message of a vLLM error body: ``{"error": {"message": ...}}`` or the older flat
    ``{"object": "error", "message": ...}``; the raw body when it is neither."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(data.get("message"), str):
            return data["message"]
        if isinstance(err, str):
            return err
    return body
