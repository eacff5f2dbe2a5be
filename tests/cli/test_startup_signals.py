"""Signals in the first moments of a command (issue 12, item 11): a SIGINT or SIGTERM at any
moment after the console script starts, during its imports (Hydra, aiohttp), the config
composition, or the engine's start-up, ends with exit 130 and one line, never a traceback and
never a silent -15. Each case starts a real ``collect`` against a real embedded server and sends
the signal a set time after the start-up guard is in place: the test waits for the process's
SIGTERM handler to show in /proc/<pid>/status (nothing before it runs any of our code)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from gym_rollouts.cli.entry import COMMANDS
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess
from gym_rollouts.engine.shutdown import StopControl, install_signal_handlers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/<pid>/status (Linux)")


def _script(command: str) -> list[str]:
    """The installed console script when it is the guarded one, else the same two lines it runs."""
    installed = Path(sys.executable).with_name(command)
    if installed.is_file() and "gym_rollouts.cli.entry" in installed.read_text(errors="replace"):
        return [str(installed)]
    return [sys.executable, "-c", f"import sys; from gym_rollouts.cli.entry import {command}; sys.exit({command}())"]


def _catches_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # exited (or not yet there)
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def _interrupt(argv: list[str], cwd: Path, sig: signal.Signals, delay: float) -> subprocess.CompletedProcess:
    """Start ``argv``, wait for its guard, sleep ``delay``, send ``sig``; its outcome."""
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _catches_sigterm(proc.pid):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the start-up guard never showed"
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[EmbeddedProcess]:
    """40 ms per model call: a signal after start-up still finds the run going."""
    with embedded_subprocess(EmbeddedConfig(latency_ms=40.0), startup_timeout=60.0) as proc:
        yield proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_a_signal_at_any_moment_of_start_up_is_exit_130_and_one_line(tmp_path: Path, slow_server: EmbeddedProcess,
                                                                     sig: signal.Signals, delay: float) -> None:
    with (tmp_path / "in.jsonl").open("wb") as fh:
        for i in range(80):  # 1.6 s of calls at 40 ms, 2 at a time: still running at the latest signal
            fh.write(orjson.dumps({"responses_create_params": {"input": f"What is {i} + 1?"},
                                   "expected_answer": str(i + 1)}) + b"\n")
    argv = [*_script("collect"), f"policy_base_url={slow_server.base_url}", f"input_jsonl_fpath={tmp_path / 'in.jsonl'}",
            f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", "resource=exact_match", "progress=off",
            "num_samples_in_parallel=2"]
    run = _interrupt(argv, tmp_path, sig, delay)
    said = run.stdout + run.stderr
    assert run.returncode == 130, said
    assert "Traceback" not in said and "KeyboardInterrupt" not in said
    guarded = run.stderr.startswith(f"collect: interrupted by {sig.name}")
    if guarded:  # before the engine's handlers: exactly the one line
        assert run.stdout == "" and run.stderr.count("\n") == 1, said
        assert "resume_from_cache=true" in run.stderr
    else:  # the engine's own handling, as for any later signal
        assert f"{sig.name}: no new rollouts" in run.stderr and "Interrupted" in run.stdout, said
    if delay <= 0.05:  # the imports alone take far longer: always the guard's
        assert guarded, said


@pytest.mark.parametrize("command", ["dump_config", "doctor", "merge_rollouts"])
def test_the_other_commands_are_guarded_too(tmp_path: Path, command: str) -> None:
    run = _interrupt(_script(command), tmp_path, signal.SIGTERM, 0.0)
    assert run.returncode == 130, run.stdout + run.stderr
    assert run.stderr == f"{command}: interrupted by SIGTERM before it finished; run it again\n" and run.stdout == ""


def test_a_signal_python_cannot_raise_where_it_lands_still_ends_the_command(tmp_path: Path) -> None:
    """A handler that runs inside ``__del__`` (or an import-lock weakref callback) cannot raise out
    of it: the guard ends the command there instead of letting it go on."""
    code = ("import os, signal, sys, time\n"
            "from gym_rollouts.cli.entry import SignalGuard\n"
            "SignalGuard('collect').install()\n"
            "class Finalized:\n"
            "    def __del__(self):\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        for _ in range(10000): pass  # the handler runs here, inside __del__\n"
            "Finalized()\n"
            "time.sleep(5)\n"
            "print('went on')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 130, run.stdout + run.stderr
    assert run.stdout == "" and run.stderr.startswith("collect: interrupted by SIGTERM")
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_the_console_scripts_are_the_guarded_entry_points() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {name: f"gym_rollouts.cli.entry:{name}" for name in COMMANDS}


async def test_undoing_the_engine_handlers_puts_the_previous_ones_back() -> None:
    def before(signum: int, frame: object) -> None:
        raise AssertionError("not called in this test")

    saved = {sig: signal.signal(sig, before) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        remove = install_signal_handlers(StopControl())
        assert signal.getsignal(signal.SIGTERM) is not before
        remove()
        assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is before
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    await asyncio.sleep(0)
