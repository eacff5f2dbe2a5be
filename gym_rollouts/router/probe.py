"""Background probing of the fleet: ``/health`` for up/down, joins, stalls, and ``/metrics`` for load.

Loops, each until cancelled:

- **health** (every ``health_interval_s``): every member server probed concurrently (``/health``, or
  the caller's ``health_path``; each probe bounded by ``health_timeout_s``); outcomes go to the
  ``HealthTracker`` and ``Liveness``. A server whose probes keep failing while our calls are on it
  is reported ``on_unresponsive`` (the dispatcher abandons those calls: they are retried elsewhere).
- **joins** (same period; every ``JOIN_INTERVAL_S`` without health probes): servers that did not
  answer at start-up are asked ``join_check`` (their ``/v1/models`` must serve the run's model):
  they join once it passes; a server serving another model is excluded, with a warning.
- **stalls** (with ``watch_stalls`` and ``stall_timeout_s`` > 0, every ``stall_check_s``): a server
  with our calls in flight and no answer for a check period gets its ``/metrics`` progress
  counters read; counters still (or ``/metrics`` not answering at all) for ``stall_timeout_s`` =
  stalled: marked down and reported ``on_unresponsive``. A server whose ``/metrics`` lacks those
  counters is left alone (and asked again after ``NO_METRICS_RETRY_S``). Servers that answer
  steadily are never polled for this.
- **metrics** (with ``use_metrics``, every ``metrics_interval_s``): ``vllm:num_requests_waiting``,
  ``vllm:kv_cache_usage_perc`` and ``vllm:num_preemptions_total`` into each ``ServerState`` (waiting
  and KV reset to 0 when a poll fails, so stale numbers never steer); each poll's outcome then goes
  to every ``load_observers`` callback ``(index, ServerLoad or None, answered)`` -- the admission
  controller (engine/admission_gate.py); ``answered`` False: no HTTP answer (or a 5xx).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from gym_rollouts.config.schema import RouterConfig
from gym_rollouts.errors import GymRolloutsError, StartupError
from gym_rollouts.router.health import DOWN, UP, HealthTracker
from gym_rollouts.router.liveness import Liveness
from gym_rollouts.router.policy import ServerState
from gym_rollouts.router.vllm_metrics import ServerLoad, parse_load, parse_progress
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)

JOIN_INTERVAL_S = 2.0
NO_METRICS_RETRY_S = 60.0
# (base URL) -> the usable base URL once it answers and serves the run's model; raises
# ``StartupError`` when it serves another one (it stays out), anything else when not reachable yet.
JoinCheck = Callable[[str], Awaitable[str]]
Unresponsive = Callable[[int, str], None]
LoadObserver = Callable[[int, ServerLoad | None, bool], None]


def root_url(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (``/health`` and ``/metrics`` live at the root)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def stall_check_interval(stall_timeout_s: float) -> float:
    """How often the stall loop looks: a quarter of the stall time, within [0.05, 1] s."""
    return min(1.0, max(0.05, stall_timeout_s / 4.0))


class Prober:
    def __init__(self, servers: list[ServerState], health: HealthTracker, transport: HttpTransport,
                 cfg: RouterConfig, *, health_path: str = "/health", liveness: Liveness | None = None,
                 on_unresponsive: Unresponsive | None = None, join_check: JoinCheck | None = None,
                 watch_stalls: bool = False) -> None:
        self.servers = servers
        self.health_path = health_path  # at the server's root; NeMo Gym environments answer GET /
        self.health = health
        self.liveness = liveness or Liveness(len(servers), time.monotonic())
        self._transport = transport
        self._cfg = cfg
        self._on_unresponsive = on_unresponsive
        self._join_check = join_check
        self._watch_stalls = watch_stalls and cfg.stall_timeout_s > 0
        self._no_metrics_until = [0.0] * len(servers)
        self.metrics_polls_failed = 0
        self.load_observers: list[LoadObserver] = []  # called after each /metrics poll of a server
        self.progress_polls = 0

    @property
    def enabled(self) -> bool:
        return (self._cfg.health_interval_s > 0 or self._cfg.use_metrics or self._watch_stalls
                or self._joins_pending())

    def _joins_pending(self) -> bool:
        return self._join_check is not None and any(self.health.joining(i) for i in range(len(self.servers)))

    async def run(self) -> None:
        cfg = self._cfg
        async with asyncio.TaskGroup() as tg:
            if cfg.health_interval_s > 0:
                tg.create_task(self._every(cfg.health_interval_s, self.probe_all))
            elif self._joins_pending():
                tg.create_task(self._every(JOIN_INTERVAL_S, self.try_joins))
            if cfg.use_metrics:
                tg.create_task(self._every(cfg.metrics_interval_s, self.poll_metrics))
            if self._watch_stalls:
                tg.create_task(self._every(stall_check_interval(cfg.stall_timeout_s), self.check_stalls))

    @staticmethod
    async def _every(interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            await step()

    # -- health ------------------------------------------------------------------------------------
    async def probe_all(self) -> None:
        members = [i for i in range(len(self.servers)) if self.health.is_member(i)]
        *results, _ = await asyncio.gather(*(self._probe(self.servers[i].url) for i in members), self.try_joins())
        now = time.monotonic()
        for index, (ok, detail) in zip(members, results):
            self.liveness.probe(index, ok, now, detail)
            change = self.health.probe_result(index, ok, now, detail)
            server = self.servers[index]
            if change == UP:
                log.warning("server %s is back up%s", server.url, " (on probation)" if server.probation else "")
            elif change == DOWN:
                log.warning("server %s marked down: %s", server.url, self.health.reason(index))
            if not ok and server.in_flight and self.health.unresponsive(index) and self._on_unresponsive:
                self._on_unresponsive(index, self.health.reason(index) or f"health probe failed: {detail}")

    async def _probe(self, base_url: str) -> tuple[bool, str]:
        try:
            status, _ = await self._transport.get(root_url(base_url) + self.health_path,
                                                  timeout_s=self._cfg.health_timeout_s, control=True)
        except GymRolloutsError as exc:
            return False, str(exc)
        return status == 200, f"HTTP {status}"

    # -- joins -------------------------------------------------------------------------------------
    async def try_joins(self) -> None:
        if self._join_check is None:
            return
        joining = [i for i in range(len(self.servers)) if self.health.joining(i)]
        if joining:
            await asyncio.gather(*(self._try_join(i) for i in joining))

    async def _try_join(self, index: int) -> None:
        server = self.servers[index]
        assert self._join_check is not None
        try:
            url = await self._join_check(server.url)
        except StartupError as exc:
            self.health.exclude(index, str(exc))
            log.warning("server %s answered but stays out of this run: %s", server.url, exc)
            return
        except GymRolloutsError as exc:
            log.debug("server %s not up yet: %s", server.url, exc)
            return
        if url != server.url:
            log.warning("server %s joins as %s", server.url, url)
            server.url = url
        self.health.join(index)
        self.liveness.probe(index, True, time.monotonic())
        log.warning("server %s is up: it joins the run", server.url)

    # -- stalls ------------------------------------------------------------------------------------
    async def check_stalls(self) -> None:
        now = time.monotonic()
        quiet_s = stall_check_interval(self._cfg.stall_timeout_s)
        suspects = [i for i, s in enumerate(self.servers)
                    if s.member and now >= self._no_metrics_until[i]
                    and self.liveness.wants_progress(i, now, s.in_flight, quiet_s)]
        if suspects:
            readings = await asyncio.gather(*(self._progress(self.servers[i].url) for i in suspects))
            for index, (counter, reachable) in zip(suspects, readings):
                self._judge(index, counter, reachable)

    async def _progress(self, base_url: str) -> tuple[float | None, bool]:
        """(the progress counters' sum or None, whether ``/metrics`` answered at all)."""
        self.progress_polls += 1
        try:
            status, raw = await self._transport.get(root_url(base_url) + "/metrics",
                                                    timeout_s=self._cfg.health_timeout_s, control=True)
        except GymRolloutsError:
            return None, False
        if status >= 500:
            return None, False
        return (parse_progress(raw.decode("utf-8", "replace")) if status == 200 else None), True

    def _judge(self, index: int, counter: float | None, reachable: bool) -> None:
        server, now = self.servers[index], time.monotonic()
        if counter is None and reachable:
            self._no_metrics_until[index] = now + NO_METRICS_RETRY_S
            log.info("server %s: no vLLM progress counters on /metrics; a stall there is caught only by "
                     "its health probes or transport.read_timeout_s", server.url)
        if not self.liveness.check_progress(index, now, server.in_flight, counter, reachable=reachable):
            return
        reason = (f"stalled: {server.in_flight} call(s) in flight, no answer and no progress in its /metrics "
                  f"counters for {self._cfg.stall_timeout_s:g} s (router.stall_timeout_s)")
        self.health.stalled(index, now, reason)
        log.warning("server %s marked down: %s", server.url, reason)
        self.liveness.reset_progress(index, now)
        if self._on_unresponsive is not None:
            self._on_unresponsive(index, reason)

    # -- load --------------------------------------------------------------------------------------
    async def poll_metrics(self) -> None:
        await asyncio.gather(*(self._poll(i, s) for i, s in enumerate(self.servers) if s.member))

    async def _poll(self, index: int, server: ServerState) -> None:
        load, answered = None, False
        try:
            status, raw = await self._transport.get(root_url(server.url) + "/metrics",
                                                    timeout_s=self._cfg.health_timeout_s, control=True)
            answered = status < 500
            if status == 200:
                load = parse_load(raw.decode("utf-8", "replace"))
        except GymRolloutsError:
            pass
        if load is None:
            self.metrics_polls_failed += 1
            server.waiting, server.kv_usage = 0.0, 0.0
        else:
            server.waiting, server.kv_usage = load.waiting, load.kv_usage
            if load.preemptions is not None:
                server.preemptions = load.preemptions
        for observer in self.load_observers:
            observer(index, load, answered)
