"""The console scripts' entry points: a signal at any moment of start-up ends with one line.

A console script imports its module before it calls ``main`` (for ``collect``: Hydra, OmegaConf,
aiohttp, about a second), and Hydra then composes the config: all of it before the engine
installs its own SIGINT/SIGTERM handlers (engine/shutdown.py). Python's defaults would end such
an early signal with a KeyboardInterrupt traceback (SIGINT) or with status -15 and no word
(SIGTERM). The entry points here install a guard first, with nothing heavy imported yet, then
import the command and run it. While the guard is in place (start-up; and again once the
engine's handlers are undone: while the summary prints, between the jobs of a multirun), the
first SIGINT or SIGTERM unwinds the command (its ``with`` blocks and ``finally`` clauses run) and
it exits 130 with one line on stderr; a second one exits 130 at once (so does the first when it
lands where Python cannot raise it: see ``SignalGuard``).

The guard raises ``StartupSignal``, a ``KeyboardInterrupt``, so code that treats Ctrl-C
specially (asyncio) unwinds as it would for Ctrl-C. Left to Python: a signal during the
interpreter's own start-up, before this module runs (a few milliseconds).

While Hydra composes the config (``signals_held``, cli/app.py), a start-up signal is kept and
raised when Hydra is done, at our task's start (``signals_released``) or a sweep's
(``release_signals`` from the sweep callback's ``on_multirun_start``): interrupted in the middle
of OmegaConf, Hydra would print an OmegaConf error and exit 1 instead of the one line and 130.
A signal Python wraps in another exception (raised inside a class body's ``__set_name__``) is
still recognised (``startup_signal_behind``).

The heap (``gc``): once the command's module is imported, everything then alive (modules,
classes, OmegaConf, aiohttp: it all lives until the process ends) is moved out of the cyclic
collector's reach (``gc.freeze``), so no later collection walks it again. When the command is
done, one collection finalizes every unreachable object while the interpreter is still whole, and
what is left is frozen too: the interpreter's own collections at exit, which walked the whole heap
again (about 0.1 s of a ``collect``), have nothing left to do. Objects are freed by reference
counting as before and ``atexit`` handlers (Hydra's log file) run as before; the one difference:
an object still alive in a reference cycle when the command ends is not finalized at exit (Python
never promised it would be; our files are closed explicitly, the output writer's are unbuffered),
nor is the garbage the imports left (a few dozen objects, frozen with them). While the command
runs, the youngest generation is collected every 10,000 net allocations instead of 700
(``YOUNG_GC_THRESHOLD``); the thresholds are put back when it ends.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import signal
import sys
from typing import Any, Iterator

from gym_rollouts import exit_codes

SIGNALS = (signal.SIGINT, signal.SIGTERM)
COMMANDS = {"collect": "gym_rollouts.cli.collect", "dump_config": "gym_rollouts.cli.dump_config",
            "doctor": "gym_rollouts.cli.doctor", "merge_rollouts": "gym_rollouts.cli.merge"}


class StartupSignal(KeyboardInterrupt):
    """A SIGINT/SIGTERM that arrived while the guard was in place."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class SignalGuard:
    """The handler for SIGINT and SIGTERM until the engine's own take over (see module doc).

    Python runs a signal handler between any two bytecodes of the main thread, also inside a
    weakref callback or ``__del__`` (e.g. in the import machinery), where an exception cannot
    propagate: it is "ignored" (printed) and the command would go on. The guard's
    ``sys.unraisablehook`` catches that case and ends the command at once, with the same line."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.fired = False
        self.held = False  # a signal now is kept for later (``signals_held``)
        self.pending: str | None = None
        self._unraisable = sys.unraisablehook

    def install(self) -> None:
        for sig in SIGNALS:
            signal.signal(sig, self.handle)
        sys.unraisablehook = self.unraisable

    def handle(self, signum: int, frame: Any) -> None:
        if self.fired:  # the first one is still unwinding (or held): do not wait for it
            os._exit(exit_codes.INTERRUPTED)
        self.fired = True
        name = signal.Signals(signum).name
        if self.held:
            self.pending = name
            return
        raise StartupSignal(name)

    def release(self) -> None:
        """Signals raise again; one that came while held is raised now."""
        self.held = False
        if self.pending is not None:
            name, self.pending = self.pending, None
            raise StartupSignal(name)

    def unraisable(self, info: Any) -> None:
        if isinstance(info.exc_value, StartupSignal):  # swallowed where it was raised: stop here
            self.exit_now(info.exc_value.signal_name)
        self._unraisable(info)

    def exit_now(self, signal_name: str) -> None:
        """The one line, then exit 130 without unwinding."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        say(interrupted_line(self.command, signal_name))
        os._exit(exit_codes.INTERRUPTED)


def say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: the exit status still says it
        pass


def interrupted_line(command: str, signal_name: str) -> str:
    """The one line an interrupted command ends with."""
    if command == "collect":
        return (f"collect: interrupted by {signal_name} while no rollout was running (start-up or exit); nothing "
                f"written was lost. To run or finish it: the same command with resume_from_cache=true")
    return f"{command}: interrupted by {signal_name} before it finished; run it again"


# Allocations (net) between two collections of the youngest generation while a command runs
# (Python's default: 700). A rollout allocates thousands of short-lived dicts and lists that
# reference counting frees anyway; at 700 the collector ran every few calls and cost ~10% of a
# collect's CPU (weather, 8,000 rollouts: 3.27 -> 2.94 s user CPU), peak RSS +0.2 MB.
YOUNG_GC_THRESHOLD = 10_000


_active_guard: SignalGuard | None = None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """While Hydra composes: a start-up signal is kept and raised when the block ends, not in the
    middle of OmegaConf (interrupted there, it leaves a half-built node whose later error, not the
    one interrupted line, is what the user would see). A second signal still exits at once."""
    guard = _active_guard
    if guard is None or guard.held:
        yield
        return
    guard.held = True
    try:
        yield
    finally:
        guard.release()


def release_signals() -> None:
    """From here on signals raise again (our task starts, or a sweep's launcher takes over)."""
    if _active_guard is not None:
        _active_guard.release()


@contextlib.contextmanager
def signals_released() -> Iterator[None]:
    """Signals raise inside the block (our task's own code); held again after it if they were."""
    guard = _active_guard
    was_held = guard is not None and guard.held
    release_signals()
    try:
        yield
    finally:
        if guard is not None and was_held:
            guard.held = True


def run_command(command: str) -> Any:
    """Guard, import ``command``'s module, run its ``main``; 130 and one line when interrupted."""
    global _active_guard
    guard = _active_guard = SignalGuard(command)
    guard.install()
    try:
        main = importlib.import_module(COMMANDS[command]).main
        gc.freeze()  # the imported modules stay to the end: no collection walks them again (module doc)
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *thresholds[1:])
        try:
            return main()
        finally:
            gc.set_threshold(*thresholds)
            settle_heap()
    except KeyboardInterrupt as exc:  # the guard's, or Python's own for a third Ctrl-C in a run
        guard.fired = True  # from here on, a signal exits at once
        say(interrupted_line(command, exc.signal_name if isinstance(exc, StartupSignal) else "SIGINT"))
        return exit_codes.INTERRUPTED
    except Exception as exc:
        # Python wraps an exception raised where it cannot pass through as is (a class body's
        # ``__set_name__``, e.g. a dataclass field during an import): the signal is its cause
        fired = startup_signal_behind(exc)
        if fired is None:
            raise
        guard.fired = True
        say(interrupted_line(command, fired.signal_name))
        return exit_codes.INTERRUPTED


def startup_signal_behind(exc: BaseException) -> StartupSignal | None:
    """The guard's ``StartupSignal`` among ``exc``'s causes and contexts, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, StartupSignal):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def settle_heap() -> None:
    """The command is done: finalize what is unreachable now, freeze the rest (module doc)."""
    gc.collect()
    gc.freeze()


def collect() -> Any:
    return run_command("collect")


def dump_config() -> Any:
    return run_command("dump_config")


def doctor() -> Any:
    return run_command("doctor")


def merge_rollouts() -> Any:
    return run_command("merge_rollouts")
