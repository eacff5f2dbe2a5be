"""Sends one model call to the server the policy picks, failing over and retrying.

Per attempt: pick a server (``RoutingPolicy``), count the request in flight (the count drops on
every outcome: answer, error or cancellation), send it (``HttpTransport``). On a retryable
failure the server is marked down (``HealthTracker``) and the call is retried on another server
when there is one, after the backoff the ``RetryPolicy`` gives, until a budget or the deadline
runs out; then the last error is raised. Non-retryable answers (4xx other than 429, among them
vLLM's context-length 400) are raised to the adapter untouched and say nothing against the
server. A background ``Prober`` brings servers back up (and reads ``/metrics`` if asked); with
background probes off (``health_interval_s=0``) a down server comes back (on probation) once its
cooldown is over, checked before each choice. ``/tokenize`` calls (``at_root``) are counted apart
(``tokenize``) and stay out of the generation counts and latency.

Every stall is bounded:

- a whole model call (with ``vllm_servers``: every attempt, backoff and ``Retry-After`` wait) ends
  at ``call_timeout_s``; no retry starts past it in any case. No timer per call (an asyncio timer
  costs ~5 us, a tenth of what routing a call costs): each attempt in flight is registered with
  its deadline and task, and one sweeper task abandons those past it (checked every
  ``sweep_interval(call_timeout_s)``, at most 1 s late);
- ``abandon`` (the sweeper, and with ``vllm_servers``: a server found stalled, or failing its health
  probes while our calls are on it) cancels the attempts in flight there and turns each into a
  ``TransportError``: ``stalled`` (retried elsewhere without backoff) or ``timeout`` (the deadline);
- a 429/503 ``Retry-After`` keeps that server down for the delay; the call goes elsewhere, or waits
  for it when no other server accepts (within the deadline and ``retry_after_max_s``);
- the dead-fleet fuse (with ``on_fleet_dead``): when no server answered anything for
  ``dead_fleet_timeout_s`` while calls needed one, ``on_fleet_dead(FleetDeadError)`` is called once,
  every call in flight is abandoned and every later call raises that error.

Servers in ``absent`` (down at start-up) stay out until the prober's ``join_check`` lets them in.

Under ``sticky_least_loaded`` each answered generation call's latency feeds a ``CapacityEstimator``
(router/capacity.py): its latency estimates serve the policy's tail guard, and without
``router.weights`` (and with ``router.learn_capacity``) it sets the servers' weights. A call's
``group`` (its task) reaches the policy for group affinity; ``count_unstarted`` gives it the run's
count of rollouts not started yet (the engine's), for its rules near the end of the run.

With ``pause`` (a ``PauseControl``, router/pause.py) every attempt first passes its gate (one
attribute check when open); time waiting there moves the call's deadlines on. ``pause("abort")``
abandons the attempts in flight with reason ``PAUSED``: each is sent again once the gate opens,
with no retry budget used, no failure counted and no server marked down.

``stats()`` gives one dict per server for the progress display and the aggregate metrics file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from gym_rollouts.config.schema import RouterConfig, TransportConfig
from gym_rollouts.errors import ConfigError, FleetDeadError, GymRolloutsError, ServerStatusError, TransportError
from gym_rollouts.router.capacity import CapacityEstimator
from gym_rollouts.router.health import DOWN, HealthTracker
from gym_rollouts.router.latency import LatencyHistogram
from gym_rollouts.router.liveness import Liveness
from gym_rollouts.router.pause import PAUSED, PauseControl
from gym_rollouts.router.policy import RoutingPolicy, ServerState
from gym_rollouts.router.probe import JoinCheck, Prober, root_url
from gym_rollouts.router.retry import RetryPolicy, RetryState, failure_kind, parse_retry_after
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "Send", "root_url"]

# How one attempt is sent: (full URL, the chosen server's base URL) -> the decoded answer; it raises
# our errors (their ``retryable`` decides retries). Default: the transport's ``post_json``.
Send = Callable[[str, str], Awaitable[Any]]
FleetDead = Callable[[FleetDeadError], None]


@dataclass
class ServerCounters:
    completed: int = 0  # generation calls answered 2xx
    tokenize: int = 0  # /tokenize calls (at_root) answered 2xx: not generation, no latency sample
    failed: int = 0  # attempts that ended in an error other than a 4xx answer
    retried: int = 0  # failed attempts that were retried (here or elsewhere)
    client_errors: int = 0  # 4xx answers passed back to the adapter (context length, ...)
    abandoned: int = 0  # attempts abandoned in flight (server stalled / unresponsive / fleet dead)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


DEADLINE = "deadline"
_NONE_TRIED: frozenset[int] = frozenset()  # a call's first attempt: no server tried yet


def sweep_interval(call_timeout_s: float) -> float:
    """How often attempts past their call's deadline are looked for: within [0.05, 1] s."""
    return min(1.0, max(0.05, call_timeout_s / 20.0))


class _PausedAbort(Exception):
    """An attempt abandoned by ``pause("abort")``: not a failure, the call is sent again."""


class _Flight:
    """One attempt in flight: the task running it, its call's deadline, and why the router
    abandoned it (``DEADLINE`` or the reason its server was given up; None while it runs)."""

    __slots__ = ("task", "deadline", "abandoned")

    def __init__(self, task: asyncio.Task[Any] | None, deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.abandoned: str | None = None


class Dispatcher:
    """Async context manager: the router of one run."""

    def __init__(self, base_urls: tuple[str, ...], transport: HttpTransport, cfg: RouterConfig,
                 tcfg: TransportConfig, *, rng: random.Random | None = None, health_path: str = "/health",
                 vllm_servers: bool = False, on_fleet_dead: FleetDead | None = None,
                 join_check: JoinCheck | None = None, absent: Mapping[str, str] | None = None,
                 pause: PauseControl | None = None) -> None:
        """``vllm_servers``: the servers are vLLM (stall detection on ``/metrics`` progress counters,
        calls abandoned on servers found unresponsive). ``on_fleet_dead``: arms the dead-fleet fuse.
        ``absent``: base URL -> why it did not answer at start-up (it joins through ``join_check``)."""
        if not base_urls:
            raise ConfigError("no vLLM server to route to (policy_base_url is empty)")
        weights = cfg.weights or tuple(1.0 for _ in base_urls)
        if len(weights) != len(base_urls):
            raise ConfigError(f"router.weights has {len(weights)} entries for {len(base_urls)} servers")
        self.servers = [ServerState(url=u.rstrip("/"), weight=w) for u, w in zip(base_urls, weights)]
        self.policy = RoutingPolicy(self.servers, cfg.policy, overload_factor=cfg.overload_factor,
                                    overload_min_gap=cfg.overload_min_gap, kv_saturation=cfg.kv_cache_saturation,
                                    group_affinity=cfg.group_affinity, group_max_imbalance=cfg.group_max_imbalance)
        # latency estimates (router/capacity.py), and the weights learned from them unless hand-set;
        # None for the baselines (they ignore weights and the tail)
        sticky = cfg.policy == "sticky_least_loaded"
        learn = cfg.learn_capacity and not cfg.weights
        self.capacity = CapacityEstimator(self.servers, set_weights=learn) if sticky else None
        if self.capacity is not None:
            self.policy.latency = self.capacity.latency
            self.policy.cautious_untried = learn  # an unanswered server's weight is a placeholder
        self.health = HealthTracker(self.servers, cooldown_s=cfg.down_cooldown_s,
                                    cooldown_max_s=cfg.down_cooldown_max_s,
                                    probe_failures_to_down=cfg.probe_failures_to_down)
        for index, server in enumerate(self.servers):
            reason = (absent or {}).get(server.url) or (absent or {}).get(base_urls[index])
            if reason is not None:
                self.health.absent(index, reason)
        if not any(s.member for s in self.servers):
            raise ConfigError("every server is absent: at least one must have answered at start-up")
        self.retry_policy = RetryPolicy.from_config(tcfg)
        self.liveness = Liveness(len(self.servers), time.monotonic(),
                                 stall_timeout_s=cfg.stall_timeout_s if vllm_servers else 0.0,
                                 dead_fleet_timeout_s=cfg.dead_fleet_timeout_s if on_fleet_dead else 0.0)
        self.prober = Prober(self.servers, self.health, transport, cfg, health_path=health_path,
                             liveness=self.liveness, on_unresponsive=self.abandon if vllm_servers else None,
                             join_check=join_check, watch_stalls=vllm_servers)
        self.retries_by_kind: dict[str, int] = {}
        self._transport = transport
        self._cfg = cfg
        self._call_timeout_s = tcfg.call_timeout_s
        self._vllm_servers = vllm_servers
        self._rng = rng or random.Random()
        self._counters = [ServerCounters() for _ in base_urls]
        self._flights: list[set[_Flight]] = [set() for _ in base_urls]
        self._probe_task: asyncio.Task[None] | None = None
        self._fuse_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._on_fleet_dead = on_fleet_dead
        self.fleet_dead: FleetDeadError | None = None
        self._dead = asyncio.Event()  # set with fleet_dead: wakes the calls waiting to retry
        self._revive_on_choose = cfg.health_interval_s <= 0  # no probes: the cooldown alone decides
        self.pause = pause  # the weight-update gate (router/pause.py); None: never paused
        if pause is not None:
            pause.attach(self)

    async def __aenter__(self) -> "Dispatcher":
        if self.prober.enabled:
            self._probe_task = asyncio.create_task(self.prober.run(), name="router-probes")
        if self._vllm_servers:  # model calls; an environment's calls have their own timeout_s
            self._sweep_task = asyncio.create_task(self._sweep(), name="router-call-deadlines")
        if self._on_fleet_dead is not None and self._cfg.dead_fleet_timeout_s > 0:
            self.liveness.reset_start(time.monotonic())
            self._fuse_task = asyncio.create_task(self._watch_fleet(), name="router-dead-fleet-fuse")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in ("_probe_task", "_fuse_task", "_sweep_task"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def forget(self, key: str) -> None:
        """The rollout ``key`` is over: drop its server affinity."""
        self.policy.forget(key)

    def count_unstarted(self, source: Callable[[], int | None] | None) -> None:
        """``source()``: the run's rollouts not started yet, read as each new rollout is placed (the
        policy's tail rules, router/policy.py); None: unknown (the rules are off)."""
        self.policy.unstarted = source

    @property
    def transport(self) -> HttpTransport:
        """The transport attempts go out on, for ``send=`` hooks that read the raw answer."""
        return self._transport

    async def post(self, path: str, body: Mapping[str, Any], key: str, *, at_root: bool = False,
                   send: Send | None = None, group: str | None = None) -> tuple[str, Any]:
        """POST ``body`` to ``<server base URL><path>`` (or ``<server root><path>`` with
        ``at_root``, for ``/tokenize``); returns (server base URL, decoded JSON). ``send`` replaces
        the transport's ``post_json`` for callers with their own request shape (cookies, raw bodies).
        ``group``: the rollout's group (its task), for group affinity at its first call."""
        started = time.monotonic()
        retry: RetryState | None = None  # made at the first failure (most calls never fail)
        deadline = started + self._call_timeout_s
        tried: set[int] = set()
        pause = self.pause
        while True:
            if pause is not None and pause.paused:  # a weight update: wait; the deadlines move on
                waited = await pause.wait_open()
                deadline += waited
                started += waited
                if retry is not None:
                    retry.started += waited
            if self.fleet_dead is not None:
                raise FleetDeadError(str(self.fleet_dead))
            if self._revive_on_choose:
                for back in self.health.revive_expired(time.monotonic()):
                    log.info("server %s: cooldown over, tried again (no health probes)", self.servers[back].url)
            index = self.policy.choose(key, frozenset(tried) if tried else _NONE_TRIED, group)
            try:
                return self.servers[index].url, await self._attempt(index, path, body, at_root, send, deadline)
            except _PausedAbort:
                continue  # pause("abort") cut it off: sent again once the gate opens
            except GymRolloutsError as exc:
                if self.fleet_dead is not None:
                    raise FleetDeadError(str(self.fleet_dead)) from None
                if retry is None:
                    retry = RetryState(self.retry_policy, started, self._rng)
                delay = self._retry_delay(retry, exc, index)
                if delay is None:
                    raise
                kind = failure_kind(exc) or "other"  # next_delay retried it, so it has a kind
                self.retries_by_kind[kind] = self.retries_by_kind.get(kind, 0) + 1
                self._counters[index].retried += 1
                tried.add(index)
                log.debug("%s failed on %s (%s); retry %d in %.2fs", path, self.servers[index].url, exc,
                          retry.total, delay)
                if delay > 0:
                    await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """The backoff before a retry; cut short when the fuse blows (the call then ends at once)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._dead.wait()

    def _retry_delay(self, retry: RetryState, exc: GymRolloutsError, index: int) -> float | None:
        server_delay = _server_delay(exc)
        elsewhere = False
        if server_delay is not None or failure_kind(exc) == "stalled":
            elsewhere = any(s.accepts() for i, s in enumerate(self.servers) if i != index)
        return retry.next_delay(exc, time.monotonic(), server_delay=server_delay, elsewhere=elsewhere)

    async def _attempt(self, index: int, path: str, body: Mapping[str, Any], at_root: bool,
                       send: Send | None, deadline: float) -> Any:
        server, counters = self.servers[index], self._counters[index]
        url = (root_url(server.url) if at_root else server.url) + path
        flight, flights = _Flight(asyncio.current_task(), deadline), self._flights[index]
        server.in_flight += 1
        flights.add(flight)
        started = time.monotonic()
        try:
            if send is None:
                result = await self._transport.post_json(url, body, server=server.url)
            else:
                result = await send(url, server.url)
        except asyncio.CancelledError:
            task = flight.task
            if flight.abandoned is None or task is None or task.uncancel() > 0:
                raise  # not (only) ours: the caller is being cancelled
            if flight.abandoned == PAUSED:
                raise _PausedAbort from None
            counters.failed += 1
            error = self._timed_out(flight, server.url, path)
            self.liveness.failed(index, time.monotonic(), str(error))
            raise error from None
        except GymRolloutsError as exc:
            self._failed(index, exc)
            raise
        finally:
            server.in_flight -= 1
            flights.discard(flight)
        ended = time.monotonic()
        self.liveness.last_answer[index] = ended  # Liveness.answered, inlined: the hot path
        if at_root:
            counters.tokenize += 1
        else:
            counters.completed += 1
            counters.latency.add((ended - started) * 1000.0)
            if self.capacity is not None:
                self.capacity.observe(index, ended - started)
        self.health.request_succeeded(index)
        return result

    def _failed(self, index: int, exc: GymRolloutsError) -> None:
        """The bookkeeping of a failed attempt (the error goes on to the retry loop)."""
        counters, now = self._counters[index], time.monotonic()
        status = exc.status if isinstance(exc, ServerStatusError) else None
        if status is not None and status < 500:
            self.liveness.answered(index, now)  # a 4xx (429 included) proves the server alive
            if not exc.retryable:
                counters.client_errors += 1
                self.health.request_succeeded(index)
                return
        else:
            self.liveness.failed(index, now, str(exc))
        counters.failed += 1
        if exc.retryable and self.health.request_failed(index, now, str(exc), _server_delay(exc)) == DOWN:
            log.warning("server %s marked down: %s", self.servers[index].url, exc)

    def _timed_out(self, flight: _Flight, server: str, path: str) -> TransportError:
        if flight.abandoned != DEADLINE:
            return TransportError(f"{path} on {server} abandoned in flight: {flight.abandoned}", server=server,
                                  kind="stalled")
        return TransportError(f"{path} on {server}: the call's deadline passed (transport.call_timeout_s="
                              f"{self._call_timeout_s:g}s)", server=server, kind="timeout")

    def abandon(self, index: int, reason: str, *, past: float | None = None) -> int:
        """Fail every attempt in flight on server ``index`` now (each is retried elsewhere; with
        ``past``, only those whose call's deadline is at or before it); returns how many."""
        count = 0
        for flight in self._flights[index]:
            if flight.abandoned is None and flight.task is not None and (past is None or flight.deadline <= past):
                flight.abandoned = reason
                flight.task.cancel()
                count += 1
        if count and reason not in (DEADLINE, PAUSED):
            self._counters[index].abandoned += count
            log.warning("server %s: %d call(s) in flight abandoned, retried elsewhere (%s)",
                        self.servers[index].url, count, reason)
        return count

    async def _sweep(self) -> None:
        """Ends the attempts whose call's deadline passed (see the module doc)."""
        every = sweep_interval(self._call_timeout_s)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for index, flights in enumerate(self._flights):
                if flights:
                    self.abandon(index, DEADLINE, past=now)

    async def _watch_fleet(self) -> None:
        timeout = self._cfg.dead_fleet_timeout_s
        every = min(1.0, max(0.05, timeout / 10.0))
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            if not self.liveness.fleet_dead(now, sum(s.in_flight for s in self.servers)):
                continue
            urls = [s.url for s in self.servers]
            self.fleet_dead = FleetDeadError(
                f"the vLLM fleet is dead: no server answered anything for {timeout:g} s "
                f"(router.dead_fleet_timeout_s): {self.liveness.describe(urls, now)}. Restart the servers "
                f"(or fix the network between them and this machine), then resume")
            log.error("%s", self.fleet_dead)
            self._dead.set()
            assert self._on_fleet_dead is not None
            self._on_fleet_dead(self.fleet_dead)
            for index in range(len(self.servers)):
                self.abandon(index, "the fleet is dead")
            return

    def stats(self) -> list[dict[str, Any]]:
        """One dict per server: url, state, in-flight, outcomes, latency (ms), load signals."""
        out = []
        for index, (server, c) in enumerate(zip(self.servers, self._counters)):
            mean, p99 = c.latency.mean(), c.latency.quantile(0.99)
            row: dict[str, Any] = {
                "server": server.url, "up": server.up, "state": self.health.state(index),
                "in_flight": server.in_flight, "completed": c.completed, "tokenize": c.tokenize, "failed": c.failed,
                "retried": c.retried, "client_errors": c.client_errors, "abandoned": c.abandoned,
                "downs": self.health.downs(index),
                "mean_latency_ms": None if mean is None else round(mean, 3),
                "p99_latency_ms": None if p99 is None else round(p99, 3),
                "weight": server.weight,
                "rollouts": getattr(server, "rollouts", None),  # live rollouts with affinity here (policy)
                "admit_limit": _limit(getattr(server, "admit_limit", None)),  # admission's cap (None: no cap)
            }
            if self._cfg.use_metrics:
                row["waiting"] = server.waiting
                row["kv_cache_usage"] = round(server.kv_usage, 4)
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        """Fleet-wide router figures (retries by kind, affinity breaks, failed ``/metrics`` polls,
        stale-socket retries)."""
        return {"policy": self.policy.kind, "retries_by_kind": dict(self.retries_by_kind),
                "affinity_breaks": self.policy.affinity_breaks, "live_rollouts": self.policy.live_rollouts,
                "group_hits": self.policy.group_hits, "group_breaks": self.policy.group_breaks,
                "live_groups": self.policy.live_groups, "tail_skips": self.policy.tail_skips,
                **({"capacity": self.capacity.stats()} if self.capacity is not None else {}),
                "servers_up": sum(s.up for s in self.servers),
                "metrics_polls_failed": self.prober.metrics_polls_failed,
                "progress_polls": self.prober.progress_polls, **self._transport.stats(),
                **({"pause": self.pause.stats()} if self.pause is not None else {})}


def _limit(value: float | None) -> int | None:
    """An admission limit for JSON: None when there is no cap (``math.inf``)."""
    return None if value is None or value == float("inf") else int(value)


def _server_delay(exc: BaseException) -> float | None:
    """The failed server's ``Retry-After`` in seconds (429 and 503 only), or None."""
    if isinstance(exc, ServerStatusError) and exc.status in (429, 503):
        return parse_retry_after(getattr(exc, "retry_after", None), time.time())
    return None
