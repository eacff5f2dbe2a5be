"""Background probing of the fleet: ``/health`` (or the caller's ``health_path``) for up/down, and optionally ``/metrics`` for load.

Every ``health_interval_s`` all servers are probed concurrently (each probe bounded by
``health_timeout_s``) and the outcomes go to the ``HealthTracker``; with ``use_metrics``, every
``metrics_interval_s`` each server's ``vllm:num_requests_waiting`` and
``vllm:kv_cache_usage_perc`` are read into its ``ServerState`` (reset to 0 when a poll fails,
so stale numbers never steer). Both loops run until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gym_rollouts.config.schema import RouterConfig
from gym_rollouts.errors import GymRolloutsError
from gym_rollouts.router.health import DOWN, UP, HealthTracker
from gym_rollouts.router.policy import ServerState
from gym_rollouts.router.vllm_metrics import parse_load
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)


def root_url(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (``/health`` and ``/metrics`` live at the root)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class Prober:
    def __init__(self, servers: list[ServerState], health: HealthTracker, transport: HttpTransport,
                 cfg: RouterConfig, *, health_path: str = "/health") -> None:
        self.servers = servers
        self.health_path = health_path  # at the server's root; NeMo Gym environments answer GET /
        self.health = health
        self._transport = transport
        self._cfg = cfg
        self.metrics_polls_failed = 0

    @property
    def enabled(self) -> bool:
        return self._cfg.health_interval_s > 0 or self._cfg.use_metrics

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self._cfg.health_interval_s > 0:
                tg.create_task(self._every(self._cfg.health_interval_s, self.probe_all))
            if self._cfg.use_metrics:
                tg.create_task(self._every(self._cfg.metrics_interval_s, self.poll_metrics))

    @staticmethod
    async def _every(interval: float, step) -> None:  # type: ignore[no-untyped-def]
        while True:
            await asyncio.sleep(interval)
            await step()

    async def probe_all(self) -> None:
        results = await asyncio.gather(*(self._probe(s.url) for s in self.servers))
        now = time.monotonic()
        for index, (ok, detail) in enumerate(results):
            change = self.health.probe_result(index, ok, now, detail)
            if change == UP:
                log.warning("server %s is back up%s", self.servers[index].url,
                            " (on probation)" if self.servers[index].probation else "")
            elif change == DOWN:
                log.warning("server %s marked down: %s", self.servers[index].url, self.health.reason(index))

    async def _probe(self, base_url: str) -> tuple[bool, str]:
        try:
            status, _ = await self._transport.get(root_url(base_url) + self.health_path,
                                                  timeout_s=self._cfg.health_timeout_s, control=True)
        except GymRolloutsError as exc:
            return False, str(exc)
        return status == 200, f"HTTP {status}"

    async def poll_metrics(self) -> None:
        await asyncio.gather(*(self._poll(s) for s in self.servers))

    async def _poll(self, server: ServerState) -> None:
        load = None
        try:
            status, raw = await self._transport.get(root_url(server.url) + "/metrics",
                                                    timeout_s=self._cfg.health_timeout_s, control=True)
            if status == 200:
                load = parse_load(raw.decode("utf-8", "replace"))
        except GymRolloutsError:
            pass
        if load is None:
            self.metrics_polls_failed += 1
            server.waiting, server.kv_usage = 0.0, 0.0
        else:
            server.waiting, server.kv_usage = load.waiting, load.kv_usage
