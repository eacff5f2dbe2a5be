"""Helpers for the router's wire tests: fast-reacting configs, a dispatcher over real servers,
and a driver that plays multi-turn rollouts through it (each turn one chat completion)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence

from gym_rollouts.config.schema import RouterConfig, TransportConfig
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.transport.client import HttpTransport

FAST_ROUTER = RouterConfig(health_interval_s=0.2, health_timeout_s=2.0, probe_failures_to_down=2,
                           down_cooldown_s=0.3, down_cooldown_max_s=3.0)
FAST_TRANSPORT = TransportConfig(connect_timeout_s=3.0, read_timeout_s=20.0, backoff_base_s=0.05,
                                 backoff_max_s=0.5, retry_deadline_s=60.0)


def body(rollout: int, turn: int) -> dict:
    return {"model": "gym-tiny", "max_tokens": 8,
            "messages": [{"role": "user", "content": f"rollout {rollout} turn {turn}: what is 2 + 3?"}]}


@contextlib.asynccontextmanager
async def open_dispatcher(urls: Sequence[str], *, router: RouterConfig = FAST_ROUTER,
                          transport: TransportConfig = FAST_TRANSPORT, concurrency: int = 16,
                          dispatcher_kw: Mapping[str, Any] | None = None,
                          **router_overrides) -> AsyncIterator[Dispatcher]:
    """A dispatcher over ``urls``; ``dispatcher_kw`` go to ``Dispatcher`` (``vllm_servers``,
    ``on_fleet_dead``, ``join_check``, ``absent``; a ``join_check`` factory taking the transport is
    called with it)."""
    rcfg = dataclasses.replace(router, **router_overrides) if router_overrides else router
    async with HttpTransport(transport, concurrency=concurrency) as http:
        kw = dict(dispatcher_kw or {})
        if callable(kw.get("join_check_factory")):
            kw["join_check"] = kw.pop("join_check_factory")(http)
        async with Dispatcher(tuple(urls), http, rcfg, transport, **kw) as dispatcher:
            yield dispatcher


@dataclass
class Call:
    rollout: int
    turn: int
    server: str
    seconds: float
    ended: float  # time.monotonic() when the answer was back


async def drive(dispatcher: Dispatcher, rollouts: Sequence[int], *, turns: int, workers: int,
                after_call: Callable[[Call], Awaitable[None] | None] | None = None) -> list[Call]:
    """Runs every rollout (``turns`` sequential calls under the key ``r<id>``) with ``workers``
    concurrent workers; returns every answered call. Any error propagates."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for r in rollouts:
        queue.put_nowait(r)
    calls: list[Call] = []

    async def worker() -> None:
        while not queue.empty():
            r = queue.get_nowait()
            try:
                for t in range(turns):
                    started = time.monotonic()
                    server, reply = await dispatcher.post("/chat/completions", body(r, t), f"r{r}")
                    assert reply["choices"][0]["message"]["content"], reply
                    ended = time.monotonic()
                    call = Call(r, t, server, ended - started, ended)
                    calls.append(call)
                    if after_call is not None:
                        maybe = after_call(call)
                        if maybe is not None:
                            await maybe
            finally:
                dispatcher.forget(f"r{r}")

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return calls


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def by_server(dispatcher: Dispatcher) -> dict[str, dict]:
    return {row["server"]: row for row in dispatcher.stats()}
