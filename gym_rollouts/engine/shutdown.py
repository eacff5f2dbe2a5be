"""Graceful stop of a run: the first SIGINT/SIGTERM stops new work and gives in-flight rollouts
``grace_s`` to finish; a second one cancels them at once; a third gets the default behaviour.

``StopControl`` is plain state the engine polls (``requested``; also read from the reader
thread, hence a plain bool) plus events to await. ``request`` / ``fail`` may be called from any
thread (the reader thread stops the run when the input changes under it): the events are set on
the loop that awaits them. ``install_signal_handlers`` wires it to the running loop; the CLI
passes ``on_signal`` to tell the user what is happening. Undoing it puts back the handlers that
were there before (the console scripts' start-up guard, cli/entry.py), so a signal after the
run (while the summary prints, between the jobs of a multirun) ends the command with one line too.
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
        self._loop: asyncio.AbstractEventLoop | None = _running_loop()

    def request(self, reason: str = "stop requested") -> None:
        """First call: stop taking work. Later calls: cancel in-flight rollouts now."""
        if self.requested:
            self.forced = True
            self._set(self._forced)
            return
        self.requested = True
        self.reason = reason
        self._set(self._requested)

    def fail(self, exc: BaseException) -> None:
        """Stop the whole run because of an error no rollout can get past (a misconfigured
        server): the same drain as a signal, then the session raises ``exc``'s message."""
        if self.fatal is None:
            self.fatal = exc
        if not self.requested:
            self.request(f"fatal: {exc}")

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop whose tasks await this control (set by the first ``wait``, or by a control
        made inside a running loop)."""
        self._loop = loop

    def _set(self, event: asyncio.Event) -> None:
        loop = self._loop
        if loop is not None and _running_loop() is not loop and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)  # from another thread: asyncio.Event is not thread-safe
        else:
            event.set()

    async def wait(self) -> None:
        self.bind(asyncio.get_running_loop())
        await self._requested.wait()

    async def wait_forced(self, timeout: float) -> None:
        """Return after ``timeout`` seconds or as soon as a forced stop is asked for."""
        self.bind(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(self._forced.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def install_signal_handlers(stop: StopControl,
                            on_signal: Callable[[str, StopControl], None] | None = None) -> Callable[[], None]:
    """Route SIGINT/SIGTERM of the running loop to ``stop``; returns a function undoing it (the
    handlers from before are put back)."""
    loop = asyncio.get_running_loop()
    stop.bind(loop)
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handle(name: str) -> None:
        if stop.forced:  # third signal: give the process back its default handling
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)  # Python's defaults: KeyboardInterrupt / terminate
            signal.raise_signal(signal.Signals[name])
            return
        stop.request(f"{name} received")
        if on_signal is not None:
            on_signal(name, stop)

    def remove() -> None:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
            if previous[sig] is not None:  # None: set outside Python; the default stays
                signal.signal(sig, previous[sig])

    for sig in SIGNALS:
        loop.add_signal_handler(sig, handle, sig.name)
    return remove


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
