"""The input file changing under a run is detected (issue 12, item 8): a rewrite, truncation,
append, replacement or removal between the scan and the job stream, or while the stream reads,
stops with ``InputChangedError`` before any job comes from the changed lines; the same bytes
under a new inode or modification time are no change. End to end: ``collect`` against a real
embedded server, its input rewritten mid-run, exits 6 with only scanned rows written, and a
resume after restoring the file completes the run."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess
from gym_rollouts.engine.shutdown import StopControl
from gym_rollouts.errors import InputChangedError
from gym_rollouts.io.input_snapshot import MIN_BLOCK_BYTES
from gym_rollouts.io.source import SCAN_ADVICE, STREAM_ADVICE, RowRules, iter_jobs, scan_file

PAD = 1000  # bytes of padding per row: a 16 KiB block holds about 15 rows


def _rows(n: int, version: str = "old") -> list[bytes]:
    return [orjson.dumps({"responses_create_params": {"input": f"What is {i} + {2 * i}? Answer with the number."},
                          "expected_answer": str(3 * i), "version": version, "pad": "x" * PAD}) + b"\n"
            for i in range(n)]


def _write(path: Path, n: int, version: str = "old") -> Path:
    path.write_bytes(b"".join(_rows(n, version)))
    return path


def _jobs(path: Path, limit: int | None = None) -> Iterator:
    return iter_jobs(path, limit=limit, rules=RowRules(), plan=scan_file(path, limit).plan)


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Same inode: the bytes overwritten (and the file cut to ``data``'s length)."""
    with path.open("r+b") as fh:
        fh.write(data)
        fh.truncate()


def test_the_input_spans_several_blocks() -> None:
    assert len(b"".join(_rows(100))) > 5 * MIN_BLOCK_BYTES  # the mid-stream tests below need it


@pytest.mark.parametrize(("change", "said"), [
    ("rewrite", "was rewritten (same size"),
    ("truncate", "was truncated"),
    ("append", "grew"),
    ("replace", "was replaced by another file"),
    ("remove", "can no longer be read"),
])
def test_a_change_between_the_scan_and_the_stream_stops_before_any_job(tmp_path: Path, change: str,
                                                                       said: str) -> None:
    path = _write(tmp_path / "in.jsonl", 40)
    plan = scan_file(path).plan
    if change == "rewrite":
        _rewrite_in_place(path, b"".join(_rows(40, "new")))
    elif change == "truncate":
        _rewrite_in_place(path, b"".join(_rows(10)))
    elif change == "append":
        with path.open("ab") as fh:
            fh.write(_rows(41)[-1])
    elif change == "replace":
        _write(tmp_path / "next.jsonl", 40, "new")
        os.replace(tmp_path / "next.jsonl", path)
    else:
        path.unlink()
    jobs = iter_jobs(path, limit=None, rules=RowRules(), plan=plan)
    with pytest.raises(InputChangedError) as caught:
        first = next(jobs)
        assert first.row["version"] == "old"  # the append: the blocks before the change are intact
        list(jobs)
    message = str(caught.value)
    assert said in message and str(path) in message and STREAM_ADVICE in message
    assert caught.value.exit_code == 6


def test_the_first_changed_line_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", 100)
    plan = scan_file(path).plan
    lines = _rows(100)
    lines[80] = lines[80].replace(b'"old"', b'"OLD"')
    _rewrite_in_place(path, b"".join(lines))
    seen = []
    with pytest.raises(InputChangedError) as caught:
        for job in iter_jobs(path, limit=None, rules=RowRules(), plan=plan):
            seen.append(job.line_no)
    named = re.search(r"the lines from (\d+) on differ", str(caught.value))
    assert named is not None, caught.value
    block_start = int(named.group(1))  # the first line of the changed line's block
    assert 81 - 20 < block_start <= 81
    # jobs from every line before that block (but the last one's part, still open), none from it on
    assert seen == list(range(1, block_start - 1))


def test_the_same_bytes_under_a_new_inode_or_mtime_are_no_change(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", 40)
    expected = [j.row for j in _jobs(path)]
    plan = scan_file(path).plan
    _write(tmp_path / "copy.jsonl", 40)
    os.replace(tmp_path / "copy.jsonl", path)  # an editor's save: a new file with the same bytes
    os.utime(path, ns=(1, 1))
    assert [j.row for j in iter_jobs(path, limit=None, rules=RowRules(), plan=plan)] == expected


def test_lines_past_the_limit_may_change(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", 40)
    plan = scan_file(path, 5).plan
    lines = _rows(40)
    lines[30:] = _rows(10, "new")
    _rewrite_in_place(path, b"".join(lines))
    assert len(list(iter_jobs(path, limit=5, rules=RowRules(), plan=plan))) == 5


def test_a_change_mid_stream_stops_at_the_next_block_with_only_scanned_jobs(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", 100)
    jobs = _jobs(path)
    taken = [next(jobs) for _ in range(3)]
    _rewrite_in_place(path, b"".join(_rows(100, "new")))
    with pytest.raises(InputChangedError, match="rewritten"):
        taken.extend(jobs)
    assert 3 <= len(taken) < 100 and {j.row["version"] for j in taken} == {"old"}


def test_a_change_during_the_scan_stops_it_saying_nothing_was_sent(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", 100)
    changed: list[bool] = []

    def check(row: dict) -> None:  # runs in the scan's second pass, after the first recorded the file
        if not changed:
            changed.append(True)
            _rewrite_in_place(path, b"".join(_rows(100, "new")))
        return None

    with pytest.raises(InputChangedError) as caught:
        scan_file(path, rules=RowRules(check=check))
    assert SCAN_ADVICE in str(caught.value) and "Nothing was sent" in str(caught.value)


async def test_the_reader_thread_can_stop_the_run() -> None:
    """``stop.fail`` from another thread (the reader's, when the input changed) wakes the loop."""
    stop = StopControl()
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.sleep(0)

    def fail_later() -> None:  # once the loop sleeps in select(): only a thread-safe wake-up reaches it
        time.sleep(0.2)
        stop.fail(InputChangedError("input changed"))

    thread = threading.Thread(target=fail_later)
    started = time.monotonic()
    thread.start()
    await asyncio.wait_for(waiter, 10.0)
    thread.join()
    assert time.monotonic() - started < 5.0  # woken at once, not by the next timer
    assert stop.requested and isinstance(stop.fatal, InputChangedError)


# -- end to end: a real collect subprocess and a real embedded server ------------------------------

@pytest.fixture(scope="module")
def slow_server() -> Iterator[EmbeddedProcess]:
    """40 ms per model call: the run lasts long enough to change its input under it."""
    with embedded_subprocess(EmbeddedConfig(latency_ms=40.0), startup_timeout=60.0) as proc:
        yield proc


def _collect(server: EmbeddedProcess, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gym_rollouts.cli.collect", f"policy_base_url={server.base_url}",
            f"input_jsonl_fpath={tmp_path / 'in.jsonl'}", f"output_jsonl_fpath={tmp_path / 'out.jsonl'}",
            "resource=exact_match", "progress=off", *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _lines_of(path: Path) -> list[dict]:
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), f"{path} ends with a torn line"
    return [orjson.loads(line) for line in data.splitlines()]


def _wait_for_rows(path: Path, at_least: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (path.read_bytes().count(b"\n") if path.exists() else 0) >= at_least or proc.poll() is not None:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {at_least} rows in {timeout} s")


def test_collect_stops_with_exit_6_when_its_input_is_rewritten_mid_run(tmp_path: Path,
                                                                       slow_server: EmbeddedProcess) -> None:
    total = 200
    original = b"".join(_rows(total))
    (tmp_path / "in.jsonl").write_bytes(original)
    proc = subprocess.Popen(_collect(slow_server, tmp_path, "num_samples_in_parallel=2"), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        _wait_for_rows(tmp_path / "out.jsonl", 3, proc)
        assert proc.poll() is None, proc.communicate()
        _rewrite_in_place(tmp_path / "in.jsonl", b"".join(_rows(total, "new")))  # same size, same inode
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 6, out + err
    assert "input changed" in err and "was rewritten (same size" in err and "Traceback" not in err
    assert "resume_from_cache=true" in err  # the resume command
    rows = _lines_of(tmp_path / "out.jsonl")
    materialized = _lines_of(tmp_path / "out_materialized_inputs.jsonl")
    assert 3 <= len(rows) < total and len(materialized) < total
    assert {r["version"] for r in rows} == {r["version"] for r in materialized} == {"old"}

    (tmp_path / "in.jsonl").write_bytes(original)  # restored: the printed resume command finishes the run
    resume = subprocess.run(_collect(slow_server, tmp_path, "num_samples_in_parallel=32", "resume_from_cache=true"),
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    rows = _lines_of(tmp_path / "out.jsonl")
    assert sorted(r["_gr"]["seq"] for r in rows) == list(range(total))
    assert {r["version"] for r in rows} == {"old"}
