"""Graceful stop of a run: the first SIGINT/SIGTERM stops new work and gives in-flight rollouts
``grace_s`` to finish; a second one cancels them at once; a third gets the default behaviour.

``StopControl`` is plain state the engine polls (``requested``; also read from the reader
thread, hence a plain bool) plus events to await. ``install_signal_handlers`` wires it to the
running loop; the CLI passes ``on_signal`` to tell the user what is happening.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopControl:
    def __init__(self) -> None:
        self.requested = False
        self.forced = False
        self.reason: str | None = None
        self.fatal: BaseException | None = None
        self._requested = asyncio.Event()
        self._forced = asyncio.Event()

    def request(self, reason: str = "stop requested") -> None:
        """First call: stop taking work. Later calls: cancel in-flight rollouts now."""
        if self.requested:
            self.forced = True
            self._forced.set()
            return
        self.requested = True
        self.reason = reason
        self._requested.set()

    def fail(self, exc: BaseException) -> None:
        """Stop the whole run because of an error no rollout can get past (a misconfigured
        server): the same drain as a signal, then the session raises ``exc``'s message."""
        if self.fatal is None:
            self.fatal = exc
        if not self.requested:
            self.request(f"fatal: {exc}")

    async def wait(self) -> None:
        await self._requested.wait()

    async def wait_forced(self, timeout: float) -> None:
        """Return after ``timeout`` seconds or as soon as a forced stop is asked for."""
        try:
            await asyncio.wait_for(self._forced.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def install_signal_handlers(stop: StopControl,
                            on_signal: Callable[[str, StopControl], None] | None = None) -> Callable[[], None]:
    """Route SIGINT/SIGTERM of the running loop to ``stop``; returns a function undoing it."""
    loop = asyncio.get_running_loop()

    def handle(name: str) -> None:
        if stop.forced:  # third signal: give the process back its default handling
            remove()
            signal.raise_signal(signal.Signals[name])
            return
        stop.request(f"{name} received")
        if on_signal is not None:
            on_signal(name, stop)

    def remove() -> None:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    for sig in SIGNALS:
        loop.add_signal_handler(sig, handle, sig.name)
    return remove
