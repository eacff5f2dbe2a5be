"""The ``response`` object records the sampling actually sent, config overrides included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_model_temperature_override_is_recorded_in_the_response(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "gym_rollouts.cli.collect", "model.temperature=0.3", "model.top_p=0.9",
         "limit=3", "progress=off", f"output_jsonl_fpath={out}", f"hydra.run.dir={tmp_path}/hydra"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    assert {(r["response"]["temperature"], r["response"]["top_p"]) for r in rows} == {(0.3, 0.9)}
