"""Pausing and resuming the vLLM servers themselves, and reading their weight versions.

vLLM (0.32) serves these only when started with ``VLLM_SERVER_DEV_MODE=1`` (its RL router, at the
server's root, not under ``/v1``):

- ``POST /pause?mode=abort|wait|keep``: new requests are queued, not refused; ``abort`` ends the
  requests in flight (their answers come back early), ``wait`` returns once they finished,
  ``keep`` freezes them until ``/resume``. -> ``{"status": "paused"}``; a bad mode: 400.
- ``POST /resume`` -> ``{"status": "resumed"}``; the queued requests run.
- ``GET /is_paused`` -> ``{"is_paused": bool}``.
- ``POST /update_weight_version`` with ``{"new_version": str}`` -> ``{"success": true, ...}``.
- ``GET /weight_info`` -> ``{"weight_version": str}`` (``"default"`` until one is set).

A server without them answers 404: ``FleetControl`` raises a ``ConfigError`` naming the server
and saying to start it with ``VLLM_SERVER_DEV_MODE=1``. Every operation goes to every server at
once; the first failure is raised once all have answered. We never transfer weights: the trainer
does, between ``pause`` and ``resume``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from gym_rollouts.errors import ConfigError, ProtocolError
from gym_rollouts.router.probe import root_url
from gym_rollouts.transport.client import status_error

log = logging.getLogger(__name__)

SERVER_MODES = ("abort", "wait", "keep")
DEV_MODE_HINT = "start vLLM with VLLM_SERVER_DEV_MODE=1 (it then serves /pause, /resume, /is_paused, /weight_info)"
CONTROL_TIMEOUT_S = 30.0  # one control call (pause?mode=wait waits for the server's requests: see pause())


class FleetControl:
    """The dev-mode controls of every server of a fleet (see module doc)."""

    def __init__(self, transport: Any, base_urls: tuple[str, ...] | list[str], *,
                 timeout_s: float = CONTROL_TIMEOUT_S) -> None:
        if not base_urls:
            raise ConfigError("FleetControl needs at least one server URL")
        self._transport = transport
        self.base_urls = tuple(u.rstrip("/") for u in base_urls)
        self.timeout_s = timeout_s

    async def pause(self, mode: str = "wait", *, timeout_s: float | None = None) -> None:
        """``/pause?mode=...`` on every server (our ``wait`` and ``abort`` map to vLLM's own)."""
        if mode not in SERVER_MODES:
            raise ConfigError(f"server pause mode must be one of {', '.join(SERVER_MODES)}; got {mode!r}")
        await self._each("POST", f"/pause?mode={mode}", None, timeout_s)

    async def resume(self) -> None:
        await self._each("POST", "/resume", None, None)

    async def is_paused(self) -> dict[str, bool]:
        answers = await self._each("GET", "/is_paused", None, None)
        return {url: bool(_field(a, "is_paused", url)) for url, a in answers.items()}

    async def update_weight_version(self, version: str) -> None:
        await self._each("POST", "/update_weight_version", {"new_version": str(version)}, None)

    async def weight_versions(self) -> dict[str, str | None]:
        """Base URL -> the version its ``/weight_info`` reports."""
        answers = await self._each("GET", "/weight_info", None, None)
        out: dict[str, str | None] = {}
        for url, answer in answers.items():
            value = _field(answer, "weight_version", url)
            out[url] = None if value is None else str(value)
        return out

    async def _each(self, method: str, path: str, body: Any, timeout_s: float | None) -> dict[str, Any]:
        results = await asyncio.gather(*(self._one(method, url, path, body, timeout_s) for url in self.base_urls),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(zip(self.base_urls, results))

    async def _one(self, method: str, base_url: str, path: str, body: Any, timeout_s: float | None) -> Any:
        url = root_url(base_url) + path
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        if method == "GET":
            status, raw = await self._transport.get(url, timeout_s=timeout, control=True)
        else:
            answer = await self._transport.post(url, orjson.dumps(body) if body is not None else b"",
                                                server=base_url, timeout_s=timeout)
            status, raw = answer.status, answer.body
        if status == 404:
            raise ConfigError(f"{base_url} has no {path.split('?')[0]} (404): {DEV_MODE_HINT}")
        if status >= 300:
            raise status_error(status, raw, base_url)
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise ProtocolError(f"{url} answered {status} with a body that is not JSON: {raw[:200]!r}") from None


def _field(answer: Any, name: str, url: str) -> Any:
    if not isinstance(answer, dict) or name not in answer:
        raise ProtocolError(f"{url}: expected a JSON object with {name!r}, got {str(answer)[:200]}")
    return answer[name]
