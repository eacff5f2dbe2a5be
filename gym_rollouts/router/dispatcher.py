"""Sends one model call to a server chosen by the policy, retrying and failing over.

Retryable failures (connect errors, disconnects, timeouts, HTTP 429/5xx) are retried with
jittered exponential backoff on another up server when there is one, under ``max_retries`` and
a deadline. Other 4xx are returned to the caller at once. A server that fails a request is marked
down until a background ``/health`` probe sees it answer again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from gym_rollouts.config.schema import RouterConfig, TransportConfig
from gym_rollouts.errors import GymRolloutsError
from gym_rollouts.router.policy import RoutingPolicy, ServerState
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)


@dataclass
class ServerStats:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def root_url(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (``/health`` and ``/metrics`` live at the root)."""
    return base_url[: -len("/v1")] if base_url.rstrip("/").endswith("/v1") else base_url.rstrip("/")


class Dispatcher:
    """Async context manager: the router of one run."""

    def __init__(self, base_urls: tuple[str, ...], transport: HttpTransport, cfg: RouterConfig,
                 tcfg: TransportConfig) -> None:
        weights = cfg.weights or tuple(1.0 for _ in base_urls)
        self.servers = [ServerState(url=u.rstrip("/"), weight=w) for u, w in zip(base_urls, weights)]
        self.policy = RoutingPolicy(self.servers, kind=cfg.policy, overload_factor=cfg.overload_factor,
                                    overload_min_gap=cfg.overload_min_gap)
        self._transport = transport
        self._cfg = cfg
        self._tcfg = tcfg
        self._stats = [ServerStats() for _ in base_urls]
        self._probe_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Dispatcher":
        if len(self.servers) > 1 or self._cfg.health_interval_s > 0:
            self._probe_task = asyncio.create_task(self._probe_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            try:
                await self._probe_task
            except asyncio.CancelledError:
                pass

    def forget(self, key: str) -> None:
        self.policy.forget(key)

    async def post(self, path: str, body: Mapping[str, Any], key: str, *, at_root: bool = False) -> tuple[str, Any]:
        """POST ``body`` to ``<server base URL><path>`` (or ``<server root><path>`` with
        ``at_root``, for ``/tokenize``); returns (server base URL, decoded JSON)."""
        deadline = time.monotonic() + self._tcfg.retry_deadline_s
        excluded: set[int] = set()
        attempt = 0
        while True:
            index = self.policy.choose(key, frozenset(excluded))
            server = self.servers[index]
            server.in_flight += 1
            started = time.perf_counter()
            try:
                url = (root_url(server.url) if at_root else server.url) + path
                result = await self._transport.post_json(url, body, server=server.url)
            except GymRolloutsError as exc:
                self._stats[index].failed += 1
                if not exc.retryable or attempt >= self._tcfg.max_retries or time.monotonic() > deadline:
                    raise
                attempt += 1
                self._stats[index].retried += 1
                if len(self.servers) > 1:
                    server.up = False
                    excluded.add(index)
                    if len(excluded) >= len(self.servers):
                        excluded.clear()
                delay = min(self._tcfg.backoff_max_s, self._tcfg.backoff_base_s * 2 ** (attempt - 1))
                log.debug("retrying after %s on %s (attempt %d)", exc, server.url, attempt)
                await asyncio.sleep(delay * (0.5 + random.random()))
                continue
            finally:
                server.in_flight -= 1
            stats = self._stats[index]
            stats.completed += 1
            if len(stats.latencies_ms) < 100_000:
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            return server.url, result

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.health_interval_s)
            for server in self.servers:
                if server.up:
                    continue
                try:
                    status, _ = await self._transport.get(root_url(server.url) + "/health",
                                                          timeout_s=min(5.0, self._cfg.health_interval_s * 2))
                    server.up = status == 200
                except GymRolloutsError:
                    server.up = False

    def stats(self) -> list[dict[str, Any]]:
        out = []
        for server, st in zip(self.servers, self._stats):
            lat = sorted(st.latencies_ms)
            out.append({
                "server": server.url, "up": server.up, "in_flight": server.in_flight,
                "completed": st.completed, "failed": st.failed, "retried": st.retried,
                "mean_latency_ms": round(sum(lat) / len(lat), 3) if lat else None,
                "p99_latency_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3) if lat else None,
            })
        return out
