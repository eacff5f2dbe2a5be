"""docs/examples/grpo_loop.py runs, as a user would run it, against the embedded backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "grpo_loop.py"


@pytest.mark.parametrize("mode", ["wait", "abort"])
def test_the_grpo_loop_example(embedded_server, tmp_path: Path, mode: str) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "2", "--prompts", "3", "--group-size", "4",
                           "--pause-mode", mode, f"policy_base_url={embedded_server.base_url}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["step"] for r in reports] == [0, 1]
    for step, report in enumerate(reports):
        assert report["groups"] == 3 and report["rollouts"] == 12 and report["group_sizes"] == [4]
        assert report["max_abs_group_advantage_sum"] < 1e-9 and report["failures"] == 0
        assert report["versions"] == [f"step-{step}"]  # each step ran under the version its update set


def test_the_example_runs_on_its_own_embedded_backend(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "1", "--prompts", "2", "--group-size", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rollouts"] == 4
