"""One Ctrl-C stops a whole multirun (not just its current job), and the printed command resumes
the sweep in place."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path


def _collect(*args: str) -> list[str]:
    return [sys.executable, "-m", "gym_rollouts.cli.collect", *args]


def test_sigint_stops_the_sweep_and_the_printed_command_resumes_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sw"
    args = ["-m", "shard_index=0,1", "num_shards=2", "servers.latency_ms=100", "num_samples_in_parallel=4",
            "num_repeats=4", "progress=off", "shutdown_grace_s=1", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(_collect(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_rows = sweep / "0" / "rollouts.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (first_rows.exists() and first_rows.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (sweep / "1").exists(), "the second job started after Ctrl-C"
    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("collect -m"))
    assert f"hydra.sweep.dir={sweep}" in command and "resume_from_cache=true" in command
    resumed = subprocess.run(_collect(*shlex.split(command)[1:]), cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    for job in ("0", "1"):
        lines = (sweep / job / "rollouts.jsonl").read_text().splitlines()
        assert len(lines) == 32 * 4 and len(set(lines)) == len(lines)
