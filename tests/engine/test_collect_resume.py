"""Crash safety of ``collect`` end to end: kill -9 at random moments, SIGINT/SIGTERM, torn lines,
refusals. ``collect`` runs as a real subprocess against a slow embedded server."""

from __future__ import annotations

import random
import re
import signal
from pathlib import Path

import orjson

from engine_helpers import read_rows, wait_for_lines, write_tasks

TASKS, REPEATS = 120, 2
KILL_TASKS = 300  # more work for the kill test: several kills must land before the run is done
RUN = ("num_repeats=2", "num_samples_in_parallel=8", "resume_from_cache=true")


def _check_complete(tmp_path: Path, tasks: int = TASKS) -> None:
    expected = [(t, r) for t in range(tasks) for r in range(REPEATS)]
    rows = read_rows(tmp_path / "out.jsonl")
    keys = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    assert sorted(keys) == expected
    assert all(r["reward"] == 1.0 and r["responses_create_params"]["input"] for r in rows)
    materialized = read_rows(tmp_path / "out_materialized_inputs.jsonl")
    assert [(m["_ng_task_index"], m["_ng_rollout_index"]) for m in materialized] == expected
    assert read_rows(tmp_path / "out_failures.jsonl") == []
    [entry] = orjson.loads((tmp_path / "out_aggregate_metrics.json").read_bytes())
    assert entry["agent_metrics"]["count"] == len(expected)
    assert entry["agent_metrics"]["pass@2/reward"] == 100.0


def test_kill_9_at_random_moments_then_resume(tmp_path: Path, start_collect, collect) -> None:
    write_tasks(tmp_path / "in.jsonl", KILL_TASKS)
    rng = random.Random()
    out = tmp_path / "out.jsonl"
    kills = 0
    for cycle in range(4):
        proc = start_collect(*RUN)
        if cycle == 0:  # a moment anywhere, startup included
            try:
                proc.wait(timeout=rng.uniform(0.2, 1.5))
            except Exception:
                pass
        else:  # a moment mid-run: after a random number of new rows
            have = out.read_bytes().count(b"\n") if out.exists() else 0
            wait_for_lines(out, have + rng.randint(1, 40), proc)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        output = proc.communicate()[0].decode()
        assert proc.returncode in (-9, 0), output
        if (tmp_path / "out_run.json").exists():  # the run had begun: add torn lines, as a kill mid-write leaves
            with out.open("ab") as fh:
                fh.write(b'{"responses_create_params": {"inp')
            with (tmp_path / "out_materialized_inputs.jsonl").open("ab") as fh:
                fh.write(b'{"_ng_task_index": 7')
    assert kills >= 2, "the run finished before the kills could land"
    done = collect(*RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "repaired" in done.stdout and "from earlier runs" in done.stdout
    _check_complete(tmp_path, KILL_TASKS)


def test_sigint_drains_then_resume_completes(tmp_path: Path, start_collect, collect) -> None:
    write_tasks(tmp_path / "in.jsonl", TASKS)
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = start_collect(*RUN, "shutdown_grace_s=30")
        wait_for_lines(tmp_path / "out.jsonl", 20 if sig == signal.SIGINT else 120, proc)
        assert proc.poll() is None, "finished before the signal"
        proc.send_signal(sig)
        output = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode == 130, output
        assert "To finish, run:" in output and "resume_from_cache=true" in output
        assert re.search(r"\[collect\] \d+/240 rollouts \(.*rollouts/s .*tok/s .*in-flight .*failed 0, "
                         r"retries \d+, ctx-stops 0", output), output  # lines mode: stderr is no terminal
        read_rows(tmp_path / "out.jsonl")  # complete lines only
        assert read_rows(tmp_path / "out_failures.jsonl") == []  # an interrupted attempt is no failure
        assert not (tmp_path / "out_aggregate_metrics.json").exists()
    done = collect(*RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    _check_complete(tmp_path)


def test_changed_inputs_or_overrides_make_resume_refuse(tmp_path: Path, collect) -> None:
    src = write_tasks(tmp_path / "in.jsonl", 4)
    first = collect("resume_from_cache=true")  # no previous output: simply starts
    assert first.returncode == 0, first.stdout + first.stderr
    again = collect()
    assert again.returncode == 2 and "already exists" in again.stderr
    changed = collect("resume_from_cache=true", "num_repeats=3", "+responses_create_params.temperature=0.3")
    assert changed.returncode == 2
    assert "resume refused" in changed.stderr and "num_repeats: 1 -> 3" in changed.stderr
    assert "responses_create_params.temperature: '<unset>' -> 0.3" in changed.stderr
    write_tasks(src, 5)
    grown = collect("resume_from_cache=true")
    assert grown.returncode == 2 and "input rows changed" in grown.stderr
    same = collect("resume_from_cache=true", "limit=4", "num_samples_in_parallel=2")
    assert same.returncode == 2 and "limit: None -> 4" in same.stderr


def _embedded_children(marker: str) -> list[int]:
    """PIDs of embedded servers whose command line carries ``marker`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "gym_rollouts.embedded" in cmd and marker in cmd:
                found.append(int(entry.name))
    return found


def test_ctrl_c_in_a_terminal_with_the_embedded_backend(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group: the embedded server
    ``collect`` started must survive it long enough for in-flight rollouts to drain, then go."""
    import os
    import subprocess
    import sys
    import time

    from engine_helpers import collect_env

    marker = "137.25"  # a latency no other test uses: identifies our server's process
    argv = [sys.executable, "-m", "gym_rollouts.cli.collect", f"output_jsonl_fpath={tmp_path / 'out.jsonl'}",
            "resource=weather", "num_repeats=10", f"servers.latency_ms={marker}",  # two model calls per rollout
            "num_samples_in_parallel=16", "progress=off", "shutdown_grace_s=20"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=collect_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_lines(tmp_path / "out.jsonl", 10, proc)
        assert proc.poll() is None
        signalled = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=90)[0].decode()
        assert proc.returncode == 130, output
        assert time.monotonic() - signalled < 12, "in-flight rollouts did not drain (server gone?)"
        assert read_rows(tmp_path / "out_failures.jsonl") == []
        assert _embedded_children(marker) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _embedded_children(marker):
            os.kill(pid, signal.SIGKILL)
