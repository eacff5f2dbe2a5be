"""A server that refuses tools (no --tool-call-parser) stops the run with the fix, instead of
failing every rollout one by one; nothing is counted against the rollouts' attempts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gym_rollouts.embedded import EmbeddedConfig, embedded_subprocess


def test_tool_refusal_stops_the_run_with_the_fix(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with embedded_subprocess(EmbeddedConfig(tool_parser=False)) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "gym_rollouts.cli.collect", f"policy_base_url={server.base_url}",
             "resource=weather", "limit=40", "num_samples_in_parallel=4", f"output_jsonl_fpath={out}",
             "progress=off", f"hydra.run.dir={tmp_path}/hydra"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--enable-auto-tool-choice" in proc.stderr and "--tool-call-parser" in proc.stderr
    assert "resume_from_cache=true" in proc.stderr
    failures = tmp_path / "out_failures.jsonl"
    assert not failures.exists() or failures.read_text() == ""
    assert not out.exists() or out.read_text() == ""
