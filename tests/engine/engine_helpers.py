"""Helpers for the engine wire tests: task files, the ``collect`` command line, file checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from gym_rollouts.embedded import EmbeddedProcess

HERE = Path(__file__).resolve().parent


def write_tasks(path: Path, n: int, explode: frozenset[int] = frozenset()) -> Path:
    """``n`` single-turn arithmetic tasks (exact-match verifiable); rows in ``explode`` are marked."""
    with path.open("wb") as fh:
        for i in range(n):
            row = {"responses_create_params": {"input": f"What is {i} + {2 * i}? Answer with the number."},
                   "expected_answer": str(3 * i), "task_id": f"t{i}"}
            if i in explode:
                row["explode"] = True
            fh.write(orjson.dumps(row) + b"\n")
    return path


def collect_argv(server: EmbeddedProcess, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gym_rollouts.cli.collect", f"policy_base_url={server.base_url}",
            f"input_jsonl_fpath={tmp_path / 'in.jsonl'}", f"output_jsonl_fpath={tmp_path / 'out.jsonl'}",
            "resource=exact_match", "progress=lines", "progress_interval_s=0.5", *extra]


def collect_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def wait_for_lines(path: Path, at_least: int, proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """Poll until ``path`` holds ``at_least`` complete lines or ``proc`` exits; the line count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = path.read_bytes().count(b"\n") if path.exists() else 0
        if n >= at_least or proc.poll() is not None:
            return n
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {at_least} lines in {timeout}s")


def read_rows(path: Path) -> list[dict]:
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), f"{path} ends with a torn line"
    return [orjson.loads(line) for line in data.splitlines()]


def served_requests(server: EmbeddedProcess) -> float:
    """Completed model calls so far, from the server's vLLM-style ``/metrics``."""
    import urllib.request

    with urllib.request.urlopen(server.root_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))
