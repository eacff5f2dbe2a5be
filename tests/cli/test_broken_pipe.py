"""A closed stdout (``collect --help | head -1``, ``dump_config | head``, a run piped into a reader
that quit) ends quietly: no traceback, no "Exception ignored", no logging error; help exits 0,
anything else 141; a collect run still writes all its rows. The stdout given to each command is a
pipe whose read end is closed before it starts, so every write to it fails (deterministic)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gym_rollouts.cli.app import EXIT_BROKEN_PIPE


def _script(name: str) -> list[str]:
    path = Path(sys.executable).with_name(name)
    return [str(path)] if path.is_file() else [sys.executable, "-m", f"gym_rollouts.cli.{name}"]


def run_into_closed_pipe(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        return subprocess.run([*_script(name), *args], cwd=cwd, env=env, stdout=write_end, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=180)
    finally:
        os.close(write_end)


def _assert_quiet(proc: subprocess.CompletedProcess) -> None:
    for needle in ("Traceback", "Exception ignored", "Logging error", "BrokenPipeError"):
        assert needle not in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [("collect", "--help"), ("collect", "--hydra-help"), ("dump_config", "--help"),
                                  ("doctor", "--help"), ("merge_rollouts", "--help"), ("collect", "-h")])
def test_help_into_a_closed_pipe_exits_0(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = run_into_closed_pipe(*args, cwd=tmp_path)
    _assert_quiet(proc)
    assert proc.returncode == 0 and proc.stderr == ""


def test_dump_config_into_a_closed_pipe_exits_141(tmp_path: Path) -> None:
    proc = run_into_closed_pipe("dump_config", "num_repeats=2", cwd=tmp_path)
    _assert_quiet(proc)
    assert proc.returncode == EXIT_BROKEN_PIPE and proc.stderr == ""


def test_a_config_error_keeps_its_code_and_message(tmp_path: Path) -> None:
    proc = run_into_closed_pipe("dump_config", "num_repets=2", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "num_repeats" in proc.stderr


def test_collect_run_into_a_closed_pipe_finishes_and_exits_141(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("")  # an existing output: overwrite=true logs a WARNING to stdout (Hydra's console log)
    proc = run_into_closed_pipe("collect", "limit=4", "num_repeats=2", "overwrite=true", "progress=lines",
                                f"output_jsonl_fpath={out}", f"hydra.run.dir={tmp_path}/hydra", cwd=tmp_path)
    _assert_quiet(proc)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert "[collect] 8/8 rollouts" in proc.stderr  # progress goes to stderr, untouched
    assert len(out.read_text().splitlines()) == 8  # the run was not cut short
    assert out.with_name("out_aggregate_metrics.json").is_file()


def test_collect_multirun_into_a_closed_pipe(tmp_path: Path) -> None:
    """Hydra's own launcher log lines (before the first job) go to the closed stdout too."""
    proc = run_into_closed_pipe("collect", "-m", "limit=1,2", "progress=off", f"hydra.sweep.dir={tmp_path}/sweep",
                                cwd=tmp_path)
    _assert_quiet(proc)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert (tmp_path / "sweep" / "sweep_summary.csv").is_file()


def test_merge_into_a_closed_pipe_exits_141(tmp_path: Path, run_cli) -> None:
    shard = tmp_path / "shard.jsonl"
    done = run_cli("collect", "limit=2", "progress=off", f"output_jsonl_fpath={shard}", f"hydra.run.dir={tmp_path}/h")
    assert done.returncode == 0, done.stderr
    proc = run_into_closed_pipe("merge_rollouts", str(shard), "-o", str(tmp_path / "all.jsonl"), cwd=tmp_path)
    _assert_quiet(proc)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 2


def test_stdout_left_open_is_unaffected(run_cli) -> None:
    result = run_cli("dump_config", "num_repeats=2")
    assert result.returncode == 0 and "num_repeats: 2" in result.stdout
