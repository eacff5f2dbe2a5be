"""A launched embedded server exits by itself when its launcher dies (no orphans after kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

LAUNCHER = r"""
import sys, time
from gym_rollouts.embedded import embedded_subprocess
with embedded_subprocess() as proc:
    print(proc.pid, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead for our purpose
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_server_exits_when_its_launcher_is_killed() -> None:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(launcher.stdout.readline())
        assert _alive(server_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), "embedded server outlived its killed launcher"
    finally:
        launcher.kill()
        launcher.wait()


def test_parent_pid_flag_is_validated() -> None:
    out = subprocess.run([sys.executable, "-m", "gym_rollouts.embedded", "--parent-pid", "x"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--parent-pid" in out.stderr
