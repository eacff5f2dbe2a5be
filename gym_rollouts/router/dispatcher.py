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
from gym_rollouts.errors import ConfigError, GymRolloutsError, ServerStatusError
from gym_rollouts.router.health import DOWN, HealthTracker
from gym_rollouts.router.latency import LatencyHistogram
from gym_rollouts.router.policy import RoutingPolicy, ServerState
from gym_rollouts.router.probe import Prober, root_url
from gym_rollouts.router.retry import RetryPolicy, RetryState, failure_kind
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "Send", "root_url"]

# How one attempt is sent: (full URL, the chosen server's base URL) -> the decoded answer; it raises
# our errors (their ``retryable`` decides retries). Default: the transport's ``post_json``.
Send = Callable[[str, str], Awaitable[Any]]


@dataclass
class ServerCounters:
    completed: int = 0  # generation calls answered 2xx
    tokenize: int = 0  # /tokenize calls (at_root) answered 2xx: not generation, no latency sample
    failed: int = 0  # attempts that ended in an error other than a 4xx answer
    retried: int = 0  # failed attempts that were retried (here or elsewhere)
    client_errors: int = 0  # 4xx answers passed back to the adapter (context length, ...)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class Dispatcher:
    """Async context manager: the router of one run."""

    def __init__(self, base_urls: tuple[str, ...], transport: HttpTransport, cfg: RouterConfig,
                 tcfg: TransportConfig, *, rng: random.Random | None = None, health_path: str = "/health") -> None:
        if not base_urls:
            raise ConfigError("no vLLM server to route to (policy_base_url is empty)")
        weights = cfg.weights or tuple(1.0 for _ in base_urls)
        if len(weights) != len(base_urls):
            raise ConfigError(f"router.weights has {len(weights)} entries for {len(base_urls)} servers")
        self.servers = [ServerState(url=u.rstrip("/"), weight=w) for u, w in zip(base_urls, weights)]
        self.policy = RoutingPolicy(self.servers, cfg.policy, overload_factor=cfg.overload_factor,
                                    overload_min_gap=cfg.overload_min_gap, kv_saturation=cfg.kv_cache_saturation)
        self.health = HealthTracker(self.servers, cooldown_s=cfg.down_cooldown_s,
                                    cooldown_max_s=cfg.down_cooldown_max_s,
                                    probe_failures_to_down=cfg.probe_failures_to_down)
        self.retry_policy = RetryPolicy.from_config(tcfg)
        self.prober = Prober(self.servers, self.health, transport, cfg, health_path=health_path)
        self.retries_by_kind: dict[str, int] = {}
        self._transport = transport
        self._cfg = cfg
        self._rng = rng or random.Random()
        self._counters = [ServerCounters() for _ in base_urls]
        self._probe_task: asyncio.Task[None] | None = None
        self._revive_on_choose = cfg.health_interval_s <= 0  # no probes: the cooldown alone decides

    async def __aenter__(self) -> "Dispatcher":
        if self.prober.enabled:
            self._probe_task = asyncio.create_task(self.prober.run(), name="router-probes")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def forget(self, key: str) -> None:
        """The rollout ``key`` is over: drop its server affinity."""
        self.policy.forget(key)

    async def post(self, path: str, body: Mapping[str, Any], key: str, *, at_root: bool = False,
                   send: Send | None = None) -> tuple[str, Any]:
        """POST ``body`` to ``<server base URL><path>`` (or ``<server root><path>`` with
        ``at_root``, for ``/tokenize``); returns (server base URL, decoded JSON). ``send`` replaces
        the transport's ``post_json`` for callers with their own request shape (cookies, raw bodies)."""
        retry = RetryState(self.retry_policy, time.monotonic(), self._rng)
        tried: set[int] = set()
        while True:
            if self._revive_on_choose:
                for back in self.health.revive_expired(time.monotonic()):
                    log.info("server %s: cooldown over, tried again (no health probes)", self.servers[back].url)
            index = self.policy.choose(key, frozenset(tried))
            try:
                return self.servers[index].url, await self._attempt(index, path, body, at_root, send)
            except GymRolloutsError as exc:
                delay = retry.next_delay(exc, time.monotonic())
                if delay is None:
                    raise
                kind = failure_kind(exc) or "other"  # next_delay retried it, so it has a kind
                self.retries_by_kind[kind] = self.retries_by_kind.get(kind, 0) + 1
                self._counters[index].retried += 1
                tried.add(index)
                log.debug("%s failed on %s (%s); retry %d in %.2fs", path, self.servers[index].url, exc,
                          retry.total, delay)
                await asyncio.sleep(delay)

    async def _attempt(self, index: int, path: str, body: Mapping[str, Any], at_root: bool,
                       send: Send | None) -> Any:
        server, counters = self.servers[index], self._counters[index]
        url = (root_url(server.url) if at_root else server.url) + path
        server.in_flight += 1
        started = time.perf_counter()
        try:
            if send is None:
                result = await self._transport.post_json(url, body, server=server.url)
            else:
                result = await send(url, server.url)
        except GymRolloutsError as exc:
            if not exc.retryable and isinstance(exc, ServerStatusError):
                counters.client_errors += 1  # the server answered: it is alive
                self.health.request_succeeded(index)
                raise
            counters.failed += 1
            if exc.retryable and self.health.request_failed(index, time.monotonic(), str(exc)) == DOWN:
                log.warning("server %s marked down: %s", server.url, exc)
            raise
        finally:
            server.in_flight -= 1
        if at_root:
            counters.tokenize += 1
        else:
            counters.completed += 1
            counters.latency.add((time.perf_counter() - started) * 1000.0)
        self.health.request_succeeded(index)
        return result

    def stats(self) -> list[dict[str, Any]]:
        """One dict per server: url, state, in-flight, outcomes, latency (ms), load signals."""
        out = []
        for index, (server, c) in enumerate(zip(self.servers, self._counters)):
            mean, p99 = c.latency.mean(), c.latency.quantile(0.99)
            row: dict[str, Any] = {
                "server": server.url, "up": server.up, "state": self.health.state(index),
                "in_flight": server.in_flight, "completed": c.completed, "tokenize": c.tokenize, "failed": c.failed,
                "retried": c.retried, "client_errors": c.client_errors, "downs": self.health.downs(index),
                "mean_latency_ms": None if mean is None else round(mean, 3),
                "p99_latency_ms": None if p99 is None else round(p99, 3),
                "weight": server.weight,
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
                "servers_up": sum(s.up for s in self.servers),
                "metrics_polls_failed": self.prober.metrics_polls_failed, **self._transport.stats()}
