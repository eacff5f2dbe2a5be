"""The fleet over a real ``collect`` subprocess: every server killed mid-run stops the run with exit 4,
a message naming the servers and the resume command (which then finishes the run); a run starts on
the servers that answer, warns about each one that does not, and lets it join when it comes up; it
is refused only when none answers."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine_helpers import collect_env, read_rows, served_requests, wait_for_lines, write_tasks

from gym_rollouts import exit_codes
from gym_rollouts.embedded import EmbeddedConfig, embedded_subprocess

COLLECT = [sys.executable, "-m", "gym_rollouts.cli.collect"]


def argv(urls: list[str], tmp_path: Path, *extra: str) -> list[str]:
    return [*COLLECT, f"policy_base_url=[{','.join(urls)}]", f"input_jsonl_fpath={tmp_path / 'in.jsonl'}",
            f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", "resource=exact_match", "num_samples_in_parallel=8",
            "progress=off", "router.health_interval_s=0.2", *extra]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, env=collect_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_server_killed_mid_run_stops_with_exit_4_and_a_working_resume_command(tmp_path: Path) -> None:
    write_tasks(tmp_path / "in.jsonl", 400)
    out = tmp_path / "out.jsonl"
    fuse_s = 2.0
    slow = EmbeddedConfig(latency_ms=40.0)
    with embedded_subprocess(slow) as a, embedded_subprocess(slow) as b:
        proc = start(argv([a.base_url, b.base_url], tmp_path, f"router.dead_fleet_timeout_s={fuse_s}"), tmp_path)
        try:
            assert wait_for_lines(out, 20, proc) >= 20, proc.communicate()
            a.kill()
            b.kill()
            killed = time.monotonic()
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        stopped_after = time.monotonic() - killed
        assert proc.returncode == exit_codes.FLEET_DEAD, stderr
        assert fuse_s <= stopped_after < fuse_s + 4.0, f"stopped {stopped_after:.1f}s after the kill (fuse {fuse_s}s)"
        assert "the vLLM fleet is dead" in stderr and a.base_url in stderr and b.base_url in stderr
        resume = next(line.strip() for line in stderr.splitlines() if "resume_from_cache=true" in line)
        written = read_rows(out)
        assert 20 <= len(written) < 400
        failures = tmp_path / "out_failures.jsonl"
        assert not failures.exists() or not failures.read_text(), "the dying fleet was blamed on rollouts"

        a.start()  # both come back on their ports: the printed command finishes the run
        b.start()
        args = shlex.split(resume)
        assert args[0] == "collect"
        done = subprocess.run([*COLLECT, *args[1:]], cwd=tmp_path, env=collect_env(), capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    assert len(rows) == 400 and len({r["_ng_task_index"] for r in rows}) == 400


def test_a_run_starts_without_a_down_server_warns_and_lets_it_join(tmp_path: Path) -> None:
    write_tasks(tmp_path / "in.jsonl", 600)
    out = tmp_path / "out.jsonl"
    slow = EmbeddedConfig(latency_ms=30.0)
    with embedded_subprocess(slow) as up, embedded_subprocess(slow) as late:
        late.kill()
        proc = start(argv([up.base_url, late.base_url], tmp_path), tmp_path)
        try:
            assert wait_for_lines(out, 30, proc) >= 30, proc.communicate()
            late.start()  # the same port
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr
        assert f"server {late.base_url} does not answer; the run starts without it" in stdout
        assert "cannot reach the vLLM server" in stdout
        assert f"server {late.base_url} is up: it joins the run" in stdout
        assert served_requests(late) > 0
    assert len(read_rows(out)) == 600


def test_a_run_is_refused_only_when_no_server_answers(tmp_path: Path) -> None:
    write_tasks(tmp_path / "in.jsonl", 5)
    urls = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    done = subprocess.run(argv(urls, tmp_path), cwd=tmp_path, env=collect_env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == exit_codes.CONFIG, done.stderr
    assert "no vLLM server answered" in done.stderr
    assert all(f"cannot reach the vLLM server at {url}" in done.stderr for url in urls)
    assert not (tmp_path / "out.jsonl").exists()
