"""One pooled aiohttp client for the whole run: timeouts, keep-alive, error mapping.

- One ``ClientSession`` + ``TCPConnector`` sized to the run's concurrency.
- Client keep-alive below vLLM's 5 s server keep-alive; a request that hits a pooled socket the
  server already closed is retried once, transparently.
- Every failure becomes one of our errors: ``TransportError`` (connect / timeout /
  disconnected), ``ServerStatusError`` (non-2xx with body), ``ProtocolError`` (2xx, not JSON).
Retry policy across servers lives in the router; this module only maps and reports.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import aiohttp
import orjson

from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.errors import ProtocolError, ServerStatusError, TransportError

_JSON_HEADERS = {"Content-Type": "application/json"}


class HttpTransport:
    """Async context manager owning the run's HTTP session."""

    def __init__(self, cfg: TransportConfig, *, concurrency: int, api_key: str | None = None) -> None:
        self._cfg = cfg
        self._limit = max(8, concurrency + 8)
        self._headers = dict(_JSON_HEADERS)
        if api_key and api_key != "EMPTY":
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        self.stale_socket_retries = 0

    async def __aenter__(self) -> "HttpTransport":
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=0, keepalive_timeout=self._cfg.keepalive_s,
            ttl_dns_cache=300,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._cfg.connect_timeout_s, sock_read=self._cfg.read_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self._headers, auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpTransport used outside its 'async with' block")
        return self._session

    async def post_json(self, url: str, body: Mapping[str, Any], *, server: str | None = None,
                        timeout_s: float | None = None) -> Any:
        """POST ``body`` as JSON, return the decoded JSON answer or raise one of our errors."""
        data = orjson.dumps(body)
        status, raw = await self._send("POST", url, data, server or url, timeout_s)
        if status >= 300:
            text = raw.decode("utf-8", "replace")
            raise ServerStatusError(status, text, server=server or url, message=error_message(text))
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{server or url} answered {status} with a body that is not JSON: {exc}") from None

    async def get(self, url: str, *, timeout_s: float | None = None) -> tuple[int, bytes]:
        """GET returning (status, body); transport failures raise ``TransportError``."""
        return await self._send("GET", url, None, url, timeout_s)

    async def _send(self, method: str, url: str, data: bytes | None, server: str,
                    timeout_s: float | None) -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self._cfg.connect_timeout_s) if timeout_s else None
        for attempt in (0, 1):
            try:
                async with self.session.request(method, url, data=data, timeout=timeout) as resp:
                    return resp.status, await resp.read()
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # A pooled keep-alive socket the server closed: retry once on a fresh one.
                if attempt == 0 and not isinstance(exc, aiohttp.ClientConnectorError):
                    self.stale_socket_retries += 1
                    continue
                raise _map_error(exc, server) from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise _map_error(exc, server) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _map_error(exc: BaseException, server: str) -> TransportError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect to {server}: {exc.os_error or exc}", server=server, kind="connect")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportError(f"timed out waiting for {server}", server=server, kind="timeout")
    return TransportError(f"connection to {server} lost: {type(exc).__name__}: {exc}", server=server, kind="disconnected")


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
