"""Pausing model calls for a weight update, and the weight version each call ran under.

One ``PauseControl`` per run, handed to the ``Dispatcher`` (which ``attach``-es itself). The
dispatcher checks ``paused`` before each attempt of a call (generation and ``/tokenize`` alike:
after ``pause()`` returns nothing of ours is on the servers) and, when set, waits at the gate;
the time spent there does not count against the call's deadline or retry deadline.

- ``pause("wait")``: new attempts wait at the gate; returns once every attempt in flight ended
  (answered, or failed and waiting to be retried after resume).
- ``pause("abort")``: the same, and every attempt in flight is abandoned at once (the dispatcher's
  abandon machinery, reason ``PAUSED``): it is sent again after ``resume()``, on the same or any
  server, without using a retry budget, writing a failure row or marking a server down.
- ``resume(version)``: opens the gate; ``version`` (a label the trainer picks) becomes the weight
  version of every call sent from now on. ``resume()`` without one keeps the current label: say so
  when the weights did not change; pass the new label when they did.

With a ``FleetControl`` (``weights.server_pause``) the servers are paused too, through vLLM's
dev-mode ``/pause`` (after our own calls drained or were abandoned) and resumed with ``/resume``
(then ``/update_weight_version`` with the label, when one is given); with ``read_server_version``
each server's ``/weight_info`` is read at start and at every resume, and a call records its
server's version instead of the label. Both need the servers' answers, so ``resume`` is async
then: use ``await resume_async(version)`` (works in every case; ``resume`` refuses with a message
rather than opening the gate on servers still paused).

``version_for(server)`` is what the adapter records per call (at send time: after the gate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from gym_rollouts.errors import ConfigError

log = logging.getLogger(__name__)

PAUSED = "paused"  # the abandon reason of attempts cut off by pause("abort")
MODES = ("wait", "abort")
DRAIN_POLL_S = 0.005  # how often pause() looks whether the attempts in flight ended


class _Routed(Protocol):
    servers: list[Any]  # each has ``in_flight``

    def abandon(self, index: int, reason: str, *, past: float | None = None) -> int: ...


class PauseControl:
    """The gate in front of every model call of a run (see module doc)."""

    def __init__(self, version: str | None = None, *, fleet: Any = None, server_pause: bool = False,
                 read_server_version: bool = False) -> None:
        if (server_pause or read_server_version) and fleet is None:
            raise ConfigError("weights.server_pause / weights.read_server_version need the fleet's addresses "
                              "(a FleetControl): build the PauseControl with open_pause()")
        self.paused = False
        self.version = version
        self.server_versions: dict[str, str | None] = {}  # base URL -> its /weight_info (read_server_version)
        self.fleet = fleet
        self.server_pause = server_pause
        self.read_server_version = read_server_version
        self.pauses = 0  # pause() calls that closed the gate
        self.aborted_calls = 0  # attempts abandoned by pause("abort") (each sent again after resume)
        self.held_calls = 0  # attempts that waited at the gate
        self.paused_s = 0.0  # seconds the gate was closed, in total
        self._open = asyncio.Event()
        self._open.set()
        self._closed_at = 0.0
        self._routers: list[_Routed] = []

    def attach(self, router: _Routed) -> None:
        """A dispatcher whose attempts this gate holds (it calls this itself)."""
        if router not in self._routers:
            self._routers.append(router)

    def version_for(self, server: str) -> str | None:
        """The weight version a call sent to ``server`` now runs under."""
        if self.read_server_version:
            return self.server_versions.get(server.rstrip("/"), self.version)
        return self.version

    async def wait_open(self) -> float:
        """Wait at the closed gate; returns the seconds waited (the dispatcher's deadlines move on by it)."""
        started = time.monotonic()
        self.held_calls += 1
        await self._open.wait()
        return time.monotonic() - started

    def in_flight(self) -> int:
        return sum(s.in_flight for router in self._routers for s in router.servers)

    async def pause(self, mode: str = "wait") -> None:
        """Close the gate; ``wait``: return when the attempts in flight ended; ``abort``: abandon
        them first (each is sent again after resume). Pausing when paused is allowed (e.g.
        ``abort`` to cut a long ``wait`` short)."""
        if mode not in MODES:
            raise ConfigError(f"pause mode must be one of {', '.join(MODES)}; got {mode!r}")
        if not self.paused:
            self.paused = True
            self._open.clear()
            self._closed_at = time.monotonic()
            self.pauses += 1
        if mode == "abort":
            for router in self._routers:
                for index in range(len(router.servers)):
                    self.aborted_calls += router.abandon(index, PAUSED)
        while self.in_flight() > 0:
            await asyncio.sleep(DRAIN_POLL_S)
        if self.server_pause:
            await self.fleet.pause(mode)
        log.info("model calls paused (%s): %d aborted so far, version %r", mode, self.aborted_calls, self.version)

    def resume(self, version: str | None = None) -> None:
        """Open the gate; ``version`` labels the calls sent from now on (None: keep the label)."""
        if self.server_pause or self.read_server_version:
            raise ConfigError("weights.server_pause / weights.read_server_version: the servers must answer "
                              "before calls go out again: use `await resume_async(version)` instead of resume()")
        self._reopen(version)

    async def resume_async(self, version: str | None = None) -> None:
        """``resume`` that also resumes the servers (``server_pause``: ``/resume``, then the label
        to ``/update_weight_version``) and re-reads their versions (``read_server_version``)."""
        if self.server_pause:
            await self.fleet.resume()
            if version is not None:
                await self.fleet.update_weight_version(version)
        if self.read_server_version:
            await self.read_versions()
        self._reopen(version)

    async def read_versions(self) -> dict[str, str | None]:
        """Each server's ``/weight_info`` version (``read_server_version``)."""
        self.server_versions = {url.rstrip("/"): v for url, v in (await self.fleet.weight_versions()).items()}
        return self.server_versions

    def _reopen(self, version: str | None) -> None:
        if version is not None:
            self.version = version
        if self.paused:
            self.paused_s += time.monotonic() - self._closed_at
            self.paused = False
            self._open.set()
            log.info("model calls resumed: version %r", self.version)

    def stats(self) -> dict[str, Any]:
        return {"paused": self.paused, "weight_version": self.version, "pauses": self.pauses,
                "aborted_calls": self.aborted_calls, "held_calls": self.held_calls,
                "paused_s": round(self.paused_s, 3)}


async def open_pause(weights: Any, transport: Any, base_urls: tuple[str, ...],
                     pause: PauseControl | None = None) -> PauseControl:
    """The run's ``PauseControl`` from ``weights`` (config ``WeightsConfig``): ``pause`` when the
    caller made one (its settings are completed from the config), else a new one. With
    ``server_pause`` / ``read_server_version`` a ``FleetControl`` on ``base_urls`` is attached and,
    for the latter, every server's version read now (a server without the endpoints: ConfigError)."""
    from gym_rollouts.router.fleet_control import FleetControl

    needs_fleet = weights.server_pause or weights.read_server_version
    fleet = FleetControl(transport, base_urls) if needs_fleet else None
    if pause is None:
        pause = PauseControl(weights.version, fleet=fleet, server_pause=weights.server_pause,
                             read_server_version=weights.read_server_version)
    else:
        if pause.version is None:
            pause.version = weights.version
        if needs_fleet:
            pause.fleet = pause.fleet or fleet
            pause.server_pause = pause.server_pause or weights.server_pause
            pause.read_server_version = pause.read_server_version or weights.read_server_version
    if pause.read_server_version:
        await pause.read_versions()
    return pause
