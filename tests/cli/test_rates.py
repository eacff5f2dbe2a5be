"""One rollouts/s: the live progress (bar and lines), the final summary and the aggregate metrics
use the same definition (engine/stats.py ``RunStats.rates``) and, once the pool has finished, the
same frozen clock, so they print the same numbers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest

from gym_rollouts.cli.progress import Progress, fields, line
from gym_rollouts.engine.metrics import AgentAggregate
from gym_rollouts.engine.stats import RunStats, per_second


@pytest.mark.parametrize(("count", "elapsed_s", "digits", "expected"), [
    (10, 2.0, 2, 5.0),
    (1, 3.0, 2, 0.33),
    (2, 3.0, 1, 0.7),
    (5, 0.0, 2, 0.0),  # nothing measured: no division by zero
    (0, 1.5, 2, 0.0),
])
def test_per_second(count: int, elapsed_s: float, digits: int, expected: float) -> None:
    assert per_second(count, elapsed_s, digits) == expected


def _finished_run() -> RunStats:
    stats = RunStats(total=12, prior_done=4, prior_failed=1)
    stats.start_clock()
    for _ in range(6):
        stats.record({"output_tokens": 37}, "answer")
    stats.failed = 1  # failures are jobs finished, not rollouts written: not in the rate
    time.sleep(0.05)
    stats.stop_clock()
    return stats


def test_a_stopped_clock_gives_one_rate_to_progress_and_summary() -> None:
    stats = _finished_run()
    shown = fields(stats)
    time.sleep(0.05)  # before the fix the summary, read later, divided by a longer time
    summary = stats.summary()
    assert shown["rollouts/s"] == str(summary["rollouts_per_s"])
    assert shown["tok/s"] == str(summary["output_tokens_per_s"])
    assert summary["rollouts_per_s"] == per_second(6, summary["elapsed_s"])  # this run's rows only
    assert stats.elapsed_s() == summary["elapsed_s"]


def test_agent_metrics_rate_is_the_summary_rate() -> None:
    stats = _finished_run()
    summary = stats.summary()
    agent = AgentAggregate()
    agent.live_count, agent.live_output_tokens = stats.done, stats.output_tokens
    metrics = agent.agent_metrics(summary["elapsed_s"])
    assert (metrics["rollouts_per_s"], metrics["output_tokens_per_s"]) == (
        summary["rollouts_per_s"], summary["output_tokens_per_s"])


def test_lines_mode_prints_the_final_figures_at_close(capsys) -> None:
    stats = RunStats(total=3)
    stats.start_clock()
    progress = Progress("lines", line_every_s=0.0)
    stats.record({"output_tokens": 5}, "answer")
    progress(stats)  # a line with the clock still running
    stats.record({"output_tokens": 5}, "answer")
    stats.record({"output_tokens": 5}, "answer")
    time.sleep(0.02)
    progress(stats)
    time.sleep(0.02)
    stats.stop_clock()  # same counts, final clock: close must print the final figures
    progress.close()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == line(stats)
    assert f"rollouts/s {stats.summary()['rollouts_per_s']}," in last


def test_bar_shows_our_rate_not_tqdms(capsys) -> None:
    stats = _finished_run()
    progress = Progress("bar")
    progress(stats)
    progress.close()
    err = capsys.readouterr().err
    assert f"rollouts/s={stats.summary()['rollouts_per_s']}" in err
    assert "rollout/s" not in err and "s/rollout" not in err  # tqdm's own (smoothed, failures counted)


def test_collect_progress_line_and_summary_agree(tmp_path: Path, run_cli) -> None:
    """A real run: the last progress line (printed after the embedded server shut down, i.e. later
    than the summary was computed) and the summary and the metrics file show one rate."""
    out = tmp_path / "out.jsonl"
    result = run_cli("collect", "limit=30", "num_repeats=2", "num_samples_in_parallel=4", "servers.latency_ms=10",
                     "progress=lines", "progress_interval_s=0.2", f"output_jsonl_fpath={out}",
                     f"hydra.run.dir={tmp_path}/hydra")
    assert result.returncode == 0, result.stdout + result.stderr
    last = [ln for ln in result.stderr.splitlines() if ln.startswith("[collect] ")][-1]
    assert last.startswith("[collect] 60/60 rollouts"), result.stderr
    live = re.search(r"rollouts/s ([\d.]+), tok/s ([\d.]+),", last)
    final = re.search(r"this run: 60 rollouts, ([\d.]+) rollouts/s, ([\d.]+) generated tokens/s", result.stdout)
    assert live and final, (result.stdout, result.stderr)
    assert live.groups() == final.groups()
    [entry] = [e for e in orjson.loads(out.with_name("out_aggregate_metrics.json").read_bytes()) if "run" in e]
    assert str(entry["run"]["rollouts_per_s"]) == final.group(1)
    assert str(entry["agent_metrics"]["rollouts_per_s"]) == final.group(1)


