"""cli/entry.py's heap handling: the imported modules are frozen before ``main`` runs, and when the
command is done the garbage it left is finalized (while the interpreter is whole) before the rest
is frozen, on a normal return, a ``SystemExit`` and an interrupt alike."""

from __future__ import annotations

import gc
import sys
import types
from typing import Any, Callable, Iterator

import pytest

from gym_rollouts import exit_codes
from gym_rollouts.cli import entry


class Cycle:
    """A reference cycle whose finalizer records that it ran."""

    finalized: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name
        self.me = self

    def __del__(self) -> None:
        Cycle.finalized.append(self.name)


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], Any]], str]]:
    """Install a fake command module whose ``main`` is the given function; returns its name."""
    signals = {sig: entry.signal.getsignal(sig) for sig in entry.SIGNALS}
    hook = sys.unraisablehook
    Cycle.finalized = []

    def install(main: Callable[[], Any]) -> str:
        module = types.ModuleType("_fake_command")
        module.main = main  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "_fake_command", module)
        monkeypatch.setitem(entry.COMMANDS, "fake", "_fake_command")
        return "fake"

    yield install
    entry._active_guard = None
    gc.unfreeze()  # leave the test process's collector as it was
    for sig, handler in signals.items():
        entry.signal.signal(sig, handler)
    sys.unraisablehook = hook


def test_frozen_before_main_and_garbage_finalized_after(command) -> None:
    seen: dict[str, int] = {}
    kept: list[list[int]] = []

    def main() -> int:
        seen["frozen_in_main"] = gc.get_freeze_count()
        Cycle("left by main")  # unreachable at once, only the cyclic collector can free it
        kept.extend([i] for i in range(100))  # alive when main returns (lists are tracked by gc)
        return 7

    assert entry.run_command(command(main)) == 7
    assert seen["frozen_in_main"] > 0  # the imports were frozen before main ran
    assert Cycle.finalized == ["left by main"]  # finalized before run_command returned, not at exit
    assert gc.get_freeze_count() > seen["frozen_in_main"]  # what main left alive is frozen too


def test_system_exit_keeps_its_code_and_settles_the_heap(command) -> None:
    def main() -> None:
        Cycle("before exit")
        sys.exit(3)

    with pytest.raises(SystemExit) as exc:
        entry.run_command(command(main))
    assert exc.value.code == 3
    assert Cycle.finalized == ["before exit"]


def test_interrupt_still_ends_with_130_and_one_line(command, capsys) -> None:
    def main() -> None:
        Cycle("interrupted")
        raise KeyboardInterrupt

    assert entry.run_command(command(main)) == exit_codes.INTERRUPTED
    assert Cycle.finalized == ["interrupted"]
    assert capsys.readouterr().err.strip() == entry.interrupted_line("fake", "SIGINT")


def test_an_object_alive_at_the_end_is_not_finalized_early(command) -> None:
    kept: list[Cycle] = []

    def main() -> int:
        kept.append(Cycle("alive"))
        return 0

    assert entry.run_command(command(main)) == 0
    assert Cycle.finalized == []  # still referenced: frozen, not collected
    assert kept[0].name == "alive"


def test_the_young_generation_threshold_is_raised_while_a_command_runs_and_put_back(command) -> None:
    seen = {}

    def main() -> int:
        seen["threshold"] = gc.get_threshold()
        return 0

    before = gc.get_threshold()
    assert entry.run_command(command(main)) == 0
    assert seen["threshold"] == (entry.YOUNG_GC_THRESHOLD, *before[1:]) != before
    assert gc.get_threshold() == before


def test_a_startup_signal_wrapped_by_python_is_still_the_one_interrupted_line(command, capsys) -> None:
    # a signal landing in a class body's __set_name__ comes out as a RuntimeError caused by it
    def main() -> int:
        try:
            raise entry.StartupSignal("SIGTERM")
        except entry.StartupSignal as exc:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance 'used'") from exc

    assert entry.run_command(command(main)) == exit_codes.INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith("fake: interrupted by SIGTERM") and err.count("\n") == 1


def test_an_ordinary_error_is_not_taken_for_a_signal(command) -> None:
    def main() -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        entry.run_command(command(main))


def test_a_signal_while_held_is_raised_when_the_block_ends(command, capsys) -> None:
    import os
    import signal

    reached = []

    def main() -> int:
        with entry.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler has run by now: it kept the signal
                pass
            reached.append("end of block")
        reached.append("after the block")  # never: the kept signal is raised at the block's end
        return 0

    assert entry.run_command(command(main)) == exit_codes.INTERRUPTED
    assert reached == ["end of block"]
    err = capsys.readouterr().err
    assert err.startswith("fake: interrupted by SIGTERM") and err.count("\n") == 1


def test_signals_released_inside_a_held_block_raise_at_once(command) -> None:
    import os
    import signal

    reached = []

    def main() -> int:
        with entry.signals_held():
            with entry.signals_released():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                reached.append("not reached")
        return 0

    assert entry.run_command(command(main)) == exit_codes.INTERRUPTED
    assert reached == []
