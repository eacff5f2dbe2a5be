"""``open_policy``: the adapter wired to a fleet, for callers outside the engine (tests, tools).

Opens the HTTP transport, runs the start-up checks (``/v1/models``: URL fix, model id,
``max_model_len``), starts the router and yields a ready ``VLLMPolicy``; closes all of it on exit.
The engine builds the same chain itself inside its run's exit stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import AsyncIterator, Sequence

from gym_rollouts.adapter.client import VLLMPolicy
from gym_rollouts.adapter.startup import FleetInfo, discover_fleet
from gym_rollouts.config.schema import ModelConfig, RouterConfig, TransportConfig
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.transport.client import HttpTransport


@contextlib.asynccontextmanager
async def open_policy(cfg: ModelConfig, base_urls: Sequence[str] | None = None, *,
                      transport: TransportConfig | None = None, router: RouterConfig | None = None,
                      concurrency: int = 8) -> AsyncIterator[tuple[VLLMPolicy, FleetInfo]]:
    """``async with open_policy(cfg, ["http://h:p/v1"]) as (policy, fleet): ...``

    ``base_urls`` defaults to ``cfg.base_url``; the model is ``cfg.model`` (or the single served one).
    """
    urls = tuple(base_urls if base_urls is not None else cfg.base_url)
    tcfg = transport or TransportConfig()
    rcfg = router or RouterConfig()
    async with HttpTransport(tcfg, concurrency=concurrency, api_key=cfg.api_key) as http:
        fleet = await discover_fleet(http, urls, cfg.model)
        async with Dispatcher(fleet.base_urls, http, rcfg, tcfg) as dispatcher:
            policy = VLLMPolicy(dataclasses.replace(cfg, base_url=fleet.base_urls), dispatcher,
                                model_name=fleet.model_name, max_model_len=fleet.max_model_len)
            yield policy, fleet
