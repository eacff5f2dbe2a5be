"""One output, one writer (issue 12 item 7): a second ``collect`` on an output a live ``collect``
writes refuses at once, naming the other process; ``kill -9`` releases the lock (the stale file
does not block the resume); the jobs of one multirun, each on its own output, do not block each
other. The lock itself (engine/output_lock.py) is tested in-process first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import gym_rollouts.engine.output_lock as output_lock
from engine_helpers import collect_env, read_rows, wait_for_lines, write_tasks
from gym_rollouts.embedded import EmbeddedProcess
from gym_rollouts.engine.output_lock import LockHolder, OutputInUseError, OutputLock
from gym_rollouts.engine.outputs import OutputPaths


def _lock(tmp_path: Path, command: str = "collect limit=3 output_jsonl_fpath=out.jsonl") -> OutputLock:
    paths = OutputPaths(tmp_path / "out.jsonl")
    return OutputLock(paths.lock, rows=paths.rows, command=command)


def test_a_second_lock_of_one_output_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = _lock(tmp_path)
    with first:
        record = orjson.loads(first.path.read_bytes())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(OutputInUseError) as refused:
            _lock(tmp_path, command="collect other").acquire()  # flock: per open file, so also in one process
        message = str(refused.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()} (this host)" in message
        assert "running since" in message and "command: collect limit=3 output_jsonl_fpath=out.jsonl" in message
        assert f"kill {os.getpid()}" in message and "output_jsonl_fpath" in message
        assert orjson.loads(first.path.read_bytes()) == record  # the refused one changed nothing
    assert not first.path.exists()  # the holder removes its file as it lets go
    with _lock(tmp_path) as again:  # and the output is free again
        assert again.held


def test_the_locks_of_two_outputs_are_independent(tmp_path: Path) -> None:
    a = OutputPaths(tmp_path / "out_job0.jsonl")
    b = OutputPaths(tmp_path / "out_job1.jsonl")
    with OutputLock(a.lock, rows=a.rows), OutputLock(b.lock, rows=b.rows):
        assert a.lock.exists() and b.lock.exists() and a.lock != b.lock


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale_pid = int(dead.stdout)
    lock = _lock(tmp_path)
    lock.path.write_bytes(orjson.dumps({"pid": stale_pid, "host": socket.gethostname(), "started_at": 1.0,
                                        "command": "collect (killed)"}))
    with lock:
        assert orjson.loads(lock.path.read_bytes())["pid"] == os.getpid()


def test_a_lock_file_removed_by_its_holder_while_we_lock_it_is_not_trusted(tmp_path: Path, monkeypatch) -> None:
    """The file we opened is unlinked by its releasing holder just before our flock succeeds: we
    must lock the new file at the path, never the removed one (else two writers could run)."""
    lock = _lock(tmp_path)
    real_flock = output_lock.fcntl.flock
    calls: list[int] = []

    def holder_releases_first(fd: int, op: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(lock.path)  # what a releasing holder does (then its close drops the lock)
        real_flock(fd, op)

    monkeypatch.setattr(output_lock.fcntl, "flock", holder_releases_first)
    with lock:
        assert len(calls) == 2  # started over on the new file
        assert lock.path.exists() and orjson.loads(lock.path.read_bytes())["pid"] == os.getpid()
        monkeypatch.setattr(output_lock.fcntl, "flock", real_flock)
        with pytest.raises(OutputInUseError):
            _lock(tmp_path).acquire()  # the file at the path is the locked one


def test_holder_description_of_a_partial_record() -> None:
    assert "not recorded itself" in LockHolder.parse(b"").describe()
    assert LockHolder.parse(b'{"pid": 7}').describe() == "pid 7"
    other = LockHolder(pid=7, host="elsewhere-host-xyz", started_at=100.0, command="collect x").describe(now=130.0)
    assert "another host" in other and "(30 s ago)" in other and other.endswith("command: collect x")


def _argv(server: EmbeddedProcess, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gym_rollouts.cli.collect", f"policy_base_url={server.base_url}",
            f"input_jsonl_fpath={tmp_path / 'in.jsonl'}", f"output_jsonl_fpath={tmp_path / 'out.jsonl'}",
            "resource=exact_match", "progress=off", f"hydra.run.dir={tmp_path / 'hydra'}", *extra]


def test_a_second_collect_on_a_live_output_refuses_at_once_and_kill_9_frees_it(
        tmp_path: Path, slow_server: EmbeddedProcess) -> None:
    write_tasks(tmp_path / "in.jsonl", 150)  # x2 repeats, 2 at a time, 40 ms each: ~6 s of writing
    out = OutputPaths(tmp_path / "out.jsonl")
    writer = subprocess.Popen(_argv(slow_server, tmp_path, "num_repeats=2", "num_samples_in_parallel=2"),
                              cwd=tmp_path, env=collect_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    try:
        wait_for_lines(out.rows, 4, writer)
        assert writer.poll() is None
        started = time.monotonic()
        seconds = [subprocess.Popen(_argv(slow_server, tmp_path, "num_repeats=2", *flags), cwd=tmp_path,
                                    env=collect_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
                   for flags in (["resume_from_cache=true"], ["overwrite=true"], [])]
        results = [(p.wait(timeout=60), p.communicate()[1]) for p in seconds]
        assert writer.poll() is None, "the first collect ended before the others were refused"
        assert time.monotonic() - started < 30
        for code, stderr in results:
            assert code == 2, stderr
            assert f"is being written by another collect: pid {writer.pid} on host {socket.gethostname()}" in stderr
            assert "running since" in stderr and "command: " in stderr and f"output_jsonl_fpath={out.rows}" in stderr
            assert "Traceback" not in stderr
        assert out.manifest.exists()  # overwrite=true deleted nothing of the live run
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert out.lock.exists()  # kill -9: the file stays, the OS released its lock
    done_before = len(read_rows(out.rows)) if out.rows.read_bytes().endswith(b"\n") else None
    resumed = subprocess.run(_argv(slow_server, tmp_path, "num_repeats=2", "num_samples_in_parallel=16",
                                   "resume_from_cache=true"), cwd=tmp_path, env=collect_env(), capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = read_rows(out.rows)
    seqs = [r["_gr"]["seq"] for r in rows]
    assert sorted(seqs) == list(range(300))  # every rollout once: no duplicates
    assert done_before is None or done_before < 300
    assert not out.lock.exists()


def test_the_jobs_of_one_multirun_do_not_block_each_other(tmp_path: Path, slow_server: EmbeddedProcess) -> None:
    write_tasks(tmp_path / "in.jsonl", 80)  # 40 rollouts per job, one at a time: ~1.6 s of writing each
    args = [a for a in _argv(slow_server, tmp_path) if not a.startswith("hydra.run.dir=")]
    proc = subprocess.run(
        [*args[:3], "-m", *args[3:], "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "shard_index=0,1",
         "num_shards=2", "num_samples_in_parallel=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=collect_env(), capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    spans = []
    for job in (0, 1):
        paths = OutputPaths(tmp_path / f"out_job{job}.jsonl")
        assert len(read_rows(paths.rows)) == 40 and not paths.lock.exists()
        spans.append((orjson.loads(paths.manifest.read_bytes())["created_at"], paths.aggregate_metrics.stat().st_mtime))
    (start0, end0), (start1, end1) = spans
    assert start0 < end1 and start1 < end0  # they wrote at the same time, each holding its own lock
