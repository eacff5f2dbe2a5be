"""Live progress shows the fleet: per-server state, in-flight, outcomes and latency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gym_rollouts.cli.progress import fleet_field, server_lines

SERVERS = [
    {"server": "http://10.0.0.1:8000/v1", "up": True, "in_flight": 7, "completed": 120, "failed": 0,
     "retried": 1, "p99_latency_ms": 41.7},
    {"server": "http://10.0.0.2:8000/v1", "up": False, "in_flight": 0, "completed": 3, "failed": 5,
     "retried": 5, "p99_latency_ms": None},
]


def test_fleet_field_counts_up_servers_and_lists_in_flight() -> None:
    assert fleet_field(SERVERS) == "1/2 up, in-flight 7/0"


def test_server_lines_show_each_server() -> None:
    first, second = server_lines(SERVERS)
    assert "10.0.0.1:8000 up" in first and "in-flight 7" in first and "completed 120" in first
    assert "p99 42 ms" in first
    assert "10.0.0.2:8000 DOWN" in second and "failed 5" in second and "p99 -" in second


def test_lines_mode_prints_one_line_per_server(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gym_rollouts.cli.collect", "servers.num_servers=2", "servers.latency_ms=20",
         "limit=40", "num_samples_in_parallel=8", "progress=lines", "progress_interval_s=0.2",
         f"output_jsonl_fpath={tmp_path}/out.jsonl", f"hydra.run.dir={tmp_path}/hydra"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    per_server = [ln for ln in proc.stderr.splitlines() if ln.startswith("[collect]   127.0.0.1:")]
    assert len({ln.split()[1] for ln in per_server}) == 2, proc.stderr
    assert all(" up: " in ln for ln in per_server)
