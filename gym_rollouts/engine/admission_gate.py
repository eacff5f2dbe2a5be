"""The admission gate: a worker takes its next rollout only while the fleet has room for it.

``await gate.acquire()`` before a worker starts a rollout, ``gate.release()`` when it ends. The
gate admits while the live rollouts number fewer than the sum of ``admit_limit`` over the servers
that are up and members of the run (with none up: one per member, see ``capacity``); waiters are admitted in arrival order as room appears (a
rollout ends, a ``/metrics`` poll raises a limit, a server comes back).

The limits come from ``router/admission.py``: with ``num_samples_in_parallel: auto`` the AIMD
controller, fed by the prober's ``/metrics`` polls (``Prober.load_observers``); with a fixed number
and ``router.max_rollouts_per_server``, that cap on every server (no controller). A fixed number
without a cap has no gate at all (``admission_gate`` returns None: no overhead).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from typing import Any, Callable

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.router.admission import FIXED, GROW, SHRINK, AdmissionController, AdmissionSettings, Observation
from gym_rollouts.router.policy import ServerState
from gym_rollouts.router.vllm_metrics import ServerLoad

log = logging.getLogger(__name__)

AUTO = "auto"
# the most workers an ``auto`` run starts, whatever the ceiling x servers says
MAX_AUTO_WORKERS = 4096


def is_auto(cfg: CollectConfig) -> bool:
    return cfg.num_samples_in_parallel == AUTO


def settings_of(cfg: CollectConfig) -> AdmissionSettings:
    a = cfg.router.admission
    return AdmissionSettings(initial=a.initial, min=a.min, max=a.max, target_kv=a.target_kv, increase=a.increase,
                             decrease=a.decrease, waiting_polls=a.waiting_polls, cooldown_polls=a.cooldown_polls,
                             cap=cfg.router.max_rollouts_per_server)


def fleet_size(cfg: CollectConfig) -> int:
    return len(cfg.model.base_url) or cfg.servers.num_servers


def auto_workers(cfg: CollectConfig, total: int) -> int:
    """Workers of an ``auto`` run: enough for every server at its ceiling (bounded by the rollouts)."""
    return max(1, min(total, settings_of(cfg).ceiling * fleet_size(cfg), MAX_AUTO_WORKERS))


class AdmissionGate:
    """See the module doc. ``controller`` None: the servers' ``admit_limit`` are static."""

    def __init__(self, servers: list[ServerState], controller: AdmissionController | None = None) -> None:
        self.servers = servers
        self.controller = controller
        self.live = 0
        self.peak = 0
        self.waited = 0  # acquisitions that had to wait
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def capacity(self) -> float:
        """Room for live rollouts: the sum of the limits of the servers up; with none up, one per
        member (the rollouts then go out, fail over and retry as without a gate, so the dead-fleet
        fuse and the retry budgets still end a run whose fleet is gone instead of it waiting here)."""
        room = sum(s.admit_limit for s in self.servers if s.up and s.member)  # type: ignore[attr-defined]
        return room or sum(1 for s in self.servers if s.member)

    async def acquire(self) -> None:
        if not self._waiters and self.live < self.capacity():
            self._admit()
            return
        self.waited += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # admitted as it was cancelled: hand the room on
            else:
                self._discard(waiter)
            raise

    def release(self) -> None:
        self.live -= 1
        self.wake()

    def wake(self) -> None:
        """Admit waiters while there is room (called on release and on every limit change)."""
        if not self._waiters:
            return
        room = self.capacity()
        while self._waiters and self.live < room:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._admit()
                waiter.set_result(None)

    def _admit(self) -> None:
        self.live += 1
        self.peak = max(self.peak, self.live)

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def observe(self, index: int, load: ServerLoad | None, answered: bool) -> None:
        """One ``/metrics`` poll of server ``index`` (the prober's load observer)."""
        if self.controller is None:
            return
        server = self.servers[index]
        obs = None if load is None else Observation(kv_usage=load.kv_usage, waiting=load.waiting,
                                                    preemptions=load.preemptions, running=load.running)
        rollouts = getattr(server, "rollouts", server.in_flight)  # the policy keeps it (router/policy.py)
        before = server.admit_limit  # type: ignore[attr-defined]
        event = self.controller.observe(index, obs, rollouts=rollouts, answered=answered)
        server.admit_limit = self.controller.limit(index)  # type: ignore[attr-defined]
        if event == FIXED:
            log.warning("server %s: its /metrics has no vLLM load metrics (KV usage, waiting): admission keeps "
                        "a fixed limit of %d live rollouts there (router.max_rollouts_per_server sets it)",
                        server.url, server.admit_limit)  # type: ignore[attr-defined]
        elif event in (GROW, SHRINK):
            log.debug("server %s: admit limit %s -> %s (%s; kv %.2f, waiting %s, rollouts %s)", server.url, before,
                      server.admit_limit, event, load.kv_usage if load else -1, load.waiting if load else -1,  # type: ignore[attr-defined]
                      rollouts)
        self.wake()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"live": self.live, "peak": self.peak, "waited": self.waited,
                               "capacity": _number(self.capacity())}
        if self.controller is not None:
            out["servers"] = [{"server": s.url, **self.controller.stats(i)} for i, s in enumerate(self.servers)]
        return out


def _number(value: float) -> float | None:
    return None if math.isinf(value) else value


def admission_gate(cfg: CollectConfig, dispatcher: Any, notify: Callable[[str], None] | None = None
                   ) -> AdmissionGate | None:
    """The run's gate (None: a fixed number without a per-server cap: no gate). Sets every
    server's starting ``admit_limit`` and, with ``auto``, subscribes the controller to the
    dispatcher's ``/metrics`` polls."""
    cap = cfg.router.max_rollouts_per_server
    servers: list[ServerState] = dispatcher.servers
    if not is_auto(cfg):
        if cap is None:
            return None
        for server in servers:
            server.admit_limit = float(cap)  # type: ignore[attr-defined]
        return AdmissionGate(servers)
    controller = AdmissionController(settings_of(cfg), len(servers))
    for index, server in enumerate(servers):
        server.admit_limit = float(controller.limit(index))  # type: ignore[attr-defined]
    gate = AdmissionGate(servers, controller)
    dispatcher.prober.load_observers.append(gate.observe)
    s = controller.settings
    notice = (f"num_samples_in_parallel=auto: each server's live rollouts follow its KV cache (/metrics polled every "
              f"{cfg.router.metrics_interval_s:g} s: router.use_metrics is on), from {controller.limit(0)} per "
              f"server up to {s.ceiling} (router.admission.max / router.max_rollouts_per_server)")
    if notify is not None:
        notify(notice)
    log.info("%s", notice)
    return gate
