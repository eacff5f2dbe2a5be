"""One pooled HTTP client for the whole run: timeouts, keep-alive, error mapping.

- The client: ``transport.http_client``: ``native`` (default; transport/http1.py, a lean HTTP/1.1
  pool: ~2.5x less CPU per call) or ``aiohttp`` (its ``ClientSession``; imported only then). Both
  behave the same in everything below (tests/transport run every case on both).
- One pool sized to the run's concurrency, and a small separate one for control traffic (``/health`` probes, ``/metrics`` polls: ``get(..., control=True)``),
  so a probe never waits for a pool slot behind generation requests (nor behind a hung server's).
- Timeouts: ``connect_timeout_s`` bounds the TCP connect; ``read_timeout_s`` bounds each wait for
  bytes of the answer (vLLM answers a non-streamed call once the generation is over, so this is
  the longest a generation may take); ``body_timeout_s`` bounds reading the body once the headers
  are in, in total (vLLM sends it in one piece, usually with the headers: then no timer is set at
  all; a body still coming after that long is a server dripping it). A call may pass ``timeout_s``
  to bound it in total instead (probes, environments); the body bound applies too. A server
  dripping its *headers* resets the per-read timeout: the router's per-call deadline
  (``call_timeout_s``) bounds every model call in total.
- Client keep-alive (``keepalive_s``) below vLLM's 5 s server keep-alive. Should the server still
  close a pooled socket just as we reuse it, the request is sent again, on the next pooled socket
  or a fresh connection (several idle sockets can expire at once: each stale one leaves the pool
  as it fails, so this ends at the latest on a fresh connection); only a *reused* connection's
  failure before any byte of the answer counts as stale (aiohttp: seen through its tracing hooks),
  so a server that drops a fresh connection is reported, not retried here.
- Every failure becomes one of our errors: ``TransportError`` (kind ``connect`` / ``timeout`` /
  ``disconnected``), ``ServerStatusError`` (non-2xx, with the body and the ``Retry-After`` header
  as sent), ``ProtocolError`` (2xx, not JSON). Retries across servers live in the router; this
  module only maps and reports.
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
from http.cookies import CookieError, SimpleCookie
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Mapping

import orjson

from gym_rollouts import __version__
from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.errors import ProtocolError, ServerStatusError, TransportError
from gym_rollouts.transport import http1

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json"}
VLLM_SERVER_KEEPALIVE_S = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, whatever its status: the raw body, the cookies it sets, and its
    ``Retry-After`` header (kept for non-2xx answers only)."""

    status: int
    body: bytes
    cookies: dict[str, str]
    retry_after: str | None = None


def status_error(status: int, body: bytes, server: str, retry_after: str | None = None) -> ServerStatusError:
    """The ``ServerStatusError`` of a non-2xx answer (vLLM's message extracted, Retry-After kept)."""
    text = body.decode("utf-8", "replace")
    return ServerStatusError(status, text, server=server, message=error_message(text), retry_after=retry_after)


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
    """Async context manager owning the run's HTTP pools."""

    def __init__(self, cfg: TransportConfig, *, concurrency: int, api_key: str | None = None,
                 extra_connections: int = 16) -> None:
        self._cfg = cfg
        self._limit = max(8, concurrency + extra_connections)
        self._headers = {"User-Agent": f"gym_rollouts/{__version__}", "Accept": "*/*", **_JSON_HEADERS}
        if api_key and api_key != "EMPTY":
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._native = cfg.http_client == "native"
        self._pool: http1.Http1Pool | None = None
        self._control_pool: http1.Http1Pool | None = None
        self._session: aiohttp.ClientSession | None = None
        self._control: aiohttp.ClientSession | None = None
        self.stale_socket_retries = 0
        if cfg.keepalive_s >= VLLM_SERVER_KEEPALIVE_S:
            log.warning("transport.keepalive_s=%s is not below vLLM's %ss server keep-alive: pooled "
                        "sockets will often be closed by the server before reuse", cfg.keepalive_s,
                        VLLM_SERVER_KEEPALIVE_S)

    async def __aenter__(self) -> "HttpTransport":
        cfg = self._cfg
        if self._native:
            self._pool = http1.Http1Pool(limit=self._limit, keepalive_s=cfg.keepalive_s,
                                         connect_timeout_s=cfg.connect_timeout_s, headers=self._headers)
            self._control_pool = http1.Http1Pool(limit=64, keepalive_s=cfg.keepalive_s,
                                                 connect_timeout_s=cfg.connect_timeout_s, headers=self._headers)
        else:
            self._session, self._control = _aiohttp_sessions(cfg, self._limit, self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pool in (self._pool, self._control_pool):
            if pool is not None:
                await pool.close()
        for session in (self._session, self._control):
            if session is not None:
                await session.close()
        self._pool = self._control_pool = None
        self._session = self._control = None

    def stats(self) -> dict[str, Any]:
        return {"stale_socket_retries": self.stale_socket_retries, "connection_limit": self._limit}

    async def post_json(self, url: str, body: Mapping[str, Any], *, server: str | None = None,
                        timeout_s: float | None = None) -> Any:
        """POST ``body`` as JSON, return the decoded JSON answer or raise one of our errors."""
        data = orjson.dumps(body)
        status, raw, _, retry_after = await self._send("POST", url, data, server or url, timeout_s)
        if status >= 300:
            raise status_error(status, raw, server or url, retry_after)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{server or url} answered {status} with a body that is not JSON: {exc}") from None

    async def post(self, url: str, data: bytes, *, server: str | None = None, timeout_s: float | None = None,
                   headers: Mapping[str, str] | None = None) -> Answer:
        """POST raw JSON bytes; the answer whatever its status (only transport failures raise)."""
        status, raw, cookies, retry_after = await self._send("POST", url, data, server or url, timeout_s,
                                                             headers=headers)
        return Answer(status, raw, cookies, retry_after)

    async def get(self, url: str, *, timeout_s: float | None = None, control: bool = False) -> tuple[int, bytes]:
        """GET returning (status, body); transport failures raise ``TransportError``.
        ``control=True`` sends it on the control pool (probes and polls)."""
        status, raw, _, _ = await self._send("GET", url, None, url, timeout_s, control=control)
        return status, raw

    def _send(self, method: str, url: str, data: bytes | None, server: str, timeout_s: float | None, *,
              control: bool = False, headers: Mapping[str, str] | None = None
              ) -> Any:  # a coroutine of (status, body, cookies, Retry-After)
        if self._native:
            pool = self._control_pool if control else self._pool
            if pool is None:
                raise RuntimeError("HttpTransport used outside its 'async with' block")
            return self._send_native(pool, method, url, data, server, timeout_s, headers)
        session = self._control if control else self._session
        if session is None:
            raise RuntimeError("HttpTransport used outside its 'async with' block")
        return self._send_aiohttp(session, method, url, data, server, timeout_s, headers)

    async def _send_native(self, pool: http1.Http1Pool, method: str, url: str, data: bytes | None, server: str,
                           timeout_s: float | None, headers: Mapping[str, str] | None
                           ) -> tuple[int, bytes, dict[str, str], str | None]:
        cfg = self._cfg
        answer_s = timeout_s or cfg.read_timeout_s
        # With a per-call total bound there is no per-read bound (as aiohttp's ClientTimeout(total=...)).
        read_timeout = None if timeout_s else cfg.read_timeout_s
        for stale_left in range(self._limit, -1, -1):  # each stale socket leaves the pool as it fails
            progress = http1.Progress()
            request = pool.request(method, url, data, headers=headers, read_timeout=read_timeout,
                                   body_timeout=cfg.body_timeout_s, progress=progress)
            try:
                if timeout_s:
                    async with asyncio.timeout(timeout_s):
                        answer = await request
                else:
                    answer = await request
            except http1.StaleConnection as exc:
                if stale_left:
                    self.stale_socket_retries += 1
                    log.debug("%s %s: pooled socket closed by the server (%s); retrying", method, url, exc)
                    continue
                raise _lost(server, str(exc)) from None
            except http1.AnswerTimeout as exc:
                raise (_body_timeout(server, cfg.body_timeout_s) if exc.which == "body"
                       else _no_answer(server, answer_s)) from None
            except TimeoutError:  # the per-call total bound
                raise (_body_timeout(server, cfg.body_timeout_s) if progress.headers_in
                       else _no_answer(server, answer_s)) from None
            except http1.ConnectFailed as exc:
                if exc.timed_out:
                    raise _connect_timed_out(server, cfg.connect_timeout_s) from None
                raise _cannot_connect(server, str(exc), _os_reason(exc.os_error, dns=exc.dns)) from None
            except http1.ConnectionLost as exc:
                raise _lost(server, str(exc)) from None
            except OSError as exc:  # a write or TLS failure surfacing from the socket itself
                raise _lost(server, f"{type(exc).__name__}: {exc}") from None
            status = answer.status
            cookies = _cookies(answer.set_cookies) if answer.set_cookies else {}
            return status, answer.body, cookies, answer.headers.get("retry-after") if status >= 300 else None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_aiohttp(self, session: "aiohttp.ClientSession", method: str, url: str, data: bytes | None,
                            server: str, timeout_s: float | None, headers: Mapping[str, str] | None
                            ) -> tuple[int, bytes, dict[str, str], str | None]:
        import aiohttp

        # No ``timeout`` argument = the session's (connect + read); ``timeout=None`` would mean none at all.
        extra: dict[str, Any] = {"headers": headers} if headers else {}
        cfg = self._cfg
        if timeout_s:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout_s, sock_connect=cfg.connect_timeout_s)
        answer_s = timeout_s or cfg.read_timeout_s
        for stale_left in range(self._limit, -1, -1):  # each stale socket leaves the pool as it fails
            attempt = _Attempt()
            in_body = False
            try:
                async with session.request(method, url, data=data, trace_request_ctx=attempt, **extra) as resp:
                    in_body = True
                    if resp.content.is_eof():  # the whole body came with the headers: the common case
                        raw = await resp.read()
                    else:  # still coming: it gets body_timeout_s (one timer, only on this path)
                        async with asyncio.timeout(cfg.body_timeout_s):
                            raw = await resp.read()
                    headers_in = resp.headers
                    cookies = ({name: morsel.value for name, morsel in resp.cookies.items()}
                               if "Set-Cookie" in headers_in else {})  # .cookies builds a SimpleCookie per call
                    status = resp.status
                    return status, raw, cookies, headers_in.get("Retry-After") if status >= 300 else None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                stale = attempt.reused and not in_body and not isinstance(exc, aiohttp.ClientConnectorError)
                if stale and stale_left:
                    self.stale_socket_retries += 1
                    log.debug("%s %s: pooled socket closed by the server (%s); retrying", method, url, exc)
                    continue
                raise _map_error(exc, server, cfg.connect_timeout_s, answer_s) from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if in_body and isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, aiohttp.ClientError):
                    raise _body_timeout(server, cfg.body_timeout_s) from None
                raise _map_error(exc, server, cfg.connect_timeout_s, answer_s) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _aiohttp_sessions(cfg: TransportConfig, limit: int, headers: Mapping[str, str]
                      ) -> tuple["aiohttp.ClientSession", "aiohttp.ClientSession"]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout_s, sock_read=cfg.read_timeout_s)
    tracing = aiohttp.TraceConfig()
    tracing.on_connection_reuseconn.append(_on_reuse)
    tracing.on_connection_create_end.append(_on_create)
    data = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=cfg.keepalive_s,
                                       ttl_dns_cache=300),
        timeout=timeout, headers=headers, auto_decompress=True, trace_configs=[tracing],
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    control = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=cfg.keepalive_s),
        timeout=timeout, headers=headers, trace_configs=[tracing], cookie_jar=aiohttp.DummyCookieJar(),
    )
    return data, control


def _body_timeout(server: str, body_timeout_s: float) -> TransportError:
    return TransportError(f"{server} sent its headers but not the whole body within {body_timeout_s:g}s "
                          f"(transport.body_timeout_s): a server dripping its answer", server=server, kind="timeout")


def _cookies(set_cookies: list[str]) -> dict[str, str]:
    """name -> value of the cookies an answer sets (a malformed Set-Cookie is skipped, as aiohttp does)."""
    jar: SimpleCookie = SimpleCookie()
    for header in set_cookies:
        try:
            jar.load(header)
        except CookieError:
            log.debug("ignoring a malformed Set-Cookie header: %r", header)
    return {name: morsel.value for name, morsel in jar.items()}


def _map_error(exc: BaseException, server: str, connect_s: float, answer_s: float) -> TransportError:
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return _connect_timed_out(server, connect_s)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _cannot_connect(server, str(exc.os_error or exc), _connect_reason(exc))
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return _no_answer(server, answer_s)
    return _lost(server, f"{type(exc).__name__}: {exc}")


# The errors both clients raise (same texts whichever client sent the call)
def _connect_timed_out(server: str, connect_s: float) -> TransportError:
    return TransportError(f"connecting to {server} timed out ({connect_s:g}s)", server=server, kind="connect")


def _cannot_connect(server: str, detail: str, reason: str | None) -> TransportError:
    return TransportError(f"cannot connect to {server}: {detail}", server=server, kind="connect", reason=reason)


def _no_answer(server: str, answer_s: float) -> TransportError:
    return TransportError(f"no answer from {server} within {answer_s:g}s", server=server, kind="timeout")


def _lost(server: str, detail: str) -> TransportError:
    return TransportError(f"connection to {server} lost: {detail}", server=server, kind="disconnected")


def _connect_reason(exc: "aiohttp.ClientConnectorError") -> str | None:
    import aiohttp

    return _os_reason(exc.os_error, dns=isinstance(exc, aiohttp.ClientConnectorDNSError))


def _os_reason(os_error: OSError | None, *, dns: bool = False) -> str | None:
    """"refused" (nothing listens there), "dns" (host name unknown) or None (anything else)."""
    if dns or isinstance(os_error, socket.gaierror):
        return "dns"
    if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
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
