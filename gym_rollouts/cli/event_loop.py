"""Which asyncio event loop the ``collect`` command runs on: uvloop when installed, else asyncio's.

uvloop (the optional ``fast`` extra: ``pip install 'gym_rollouts[fast]'``) is a drop-in event loop
on libuv; it lowers the client's CPU per model call (see docs/engine.md, "Client cost (P1)").
The environment variable ``GYM_ROLLOUTS_EVENT_LOOP`` chooses:

- ``auto`` (default, also when unset or empty): uvloop if it can be imported, else asyncio's loop;
- ``asyncio``: always asyncio's default loop (e.g. to rule uvloop out when debugging);
- ``uvloop``: uvloop, and stop with a message when it is not installed.

Read here, in cli/ (the only place that reads the environment); the engine never cares which
loop runs it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Coroutine, Mapping, TypeVar

from gym_rollouts.errors import ConfigError

ENV = "GYM_ROLLOUTS_EVENT_LOOP"
CHOICES = ("auto", "asyncio", "uvloop")
T = TypeVar("T")


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """(the loop's name, its factory; None = asyncio's default) for ``choice``."""
    choice = (choice or "auto").strip().lower()
    if choice not in CHOICES:
        raise ConfigError(f"{ENV}={choice!r} is not an event loop choice; use one of {', '.join(CHOICES)}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(f"{ENV}=uvloop but uvloop is not installed: pip install 'gym_rollouts[fast]' "
                              f"(or uvloop), or set {ENV}=auto / asyncio") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def choice_from(environ: Mapping[str, str]) -> str:
    return environ.get(ENV, "") or "auto"


def run(coro: Coroutine[Any, Any, T], environ: Mapping[str, str]) -> T:
    """``asyncio.run(coro)`` on the loop ``environ`` chooses (see module doc)."""
    try:
        _, factory = loop_factory(choice_from(environ))
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    finally:
        # never started (a bad loop choice, or a signal landing before the loop ran it): closed
        # here, so no "coroutine was never awaited" warning follows the one interrupted line
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()
