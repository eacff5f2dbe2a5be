"""A server answering unusable 200s is a failing server, end to end: ``collect`` as a subprocess
over two embedded vLLM doubles (child processes on 127.0.0.1), one of which answers every
generation with HTTP 200 and an HTML page. Every rollout completes on the other server, the
broken one is taken out (router stats in the aggregate metrics file); with the broken server
alone, each failure row names it and carries an excerpt of its body."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from engine_helpers import collect_env, read_rows, write_tasks
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess

FAST = ("router.health_interval_s=0.2", "router.down_cooldown_s=0.3", "transport.backoff_base_s=0.01",
        "transport.backoff_max_s=0.05", "progress=off")


@pytest.fixture(scope="module")
def garbage_server() -> Iterator[EmbeddedProcess]:
    with embedded_subprocess(EmbeddedConfig(fault_rate=1.0, fault_kinds=("garbage",)), startup_timeout=60.0) as proc:
        yield proc


@pytest.fixture(scope="module")
def good_server() -> Iterator[EmbeddedProcess]:
    with embedded_subprocess(EmbeddedConfig(), startup_timeout=60.0) as proc:
        yield proc


def collect(tmp_path: Path, urls: list[str], *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "gym_rollouts.cli.collect", f"policy_base_url=[{','.join(urls)}]",
            f"input_jsonl_fpath={tmp_path / 'in.jsonl'}", f"output_jsonl_fpath={tmp_path / 'out.jsonl'}",
            "resource=exact_match", *FAST, *extra]
    return subprocess.run(argv, cwd=tmp_path, env=collect_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_every_rollout_completes_on_the_good_server_and_the_garbage_one_is_marked_down(
        tmp_path: Path, garbage_server: EmbeddedProcess, good_server: EmbeddedProcess) -> None:
    write_tasks(tmp_path / "in.jsonl", 12)
    run = collect(tmp_path, [garbage_server.base_url, good_server.base_url], "num_samples_in_parallel=4")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = read_rows(tmp_path / "out.jsonl")
    assert sorted(r["_ng_task_index"] for r in rows) == list(range(12))
    assert all(r["_gr"]["servers"] == [good_server.base_url] and r["reward"] == 1.0 for r in rows)
    assert read_rows(tmp_path / "out_failures.jsonl") == []
    [entry] = orjson.loads((tmp_path / "out_aggregate_metrics.json").read_bytes())
    servers = {s["server"]: s for s in entry["servers"]}
    bad, good = servers[garbage_server.base_url], servers[good_server.base_url]
    assert bad["downs"] >= 1 and bad["failed"] >= 1 and bad["completed"] == 0
    assert good["failed"] == 0 and good["completed"] >= 12
    assert entry["run"]["router"]["retries_by_kind"]["malformed"] == bad["failed"]


def test_with_only_the_garbage_server_each_failure_names_it_with_a_body_excerpt(
        tmp_path: Path, garbage_server: EmbeddedProcess) -> None:
    write_tasks(tmp_path / "in.jsonl", 2)
    run = collect(tmp_path, [garbage_server.base_url], "max_attempts=1")
    assert run.returncode == 3, run.stdout + run.stderr
    assert read_rows(tmp_path / "out.jsonl") == []
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted(f["_ng_task_index"] for f in failures) == [0, 1]
    for failure in failures:
        assert failure["server"] == garbage_server.base_url and failure["error_class"] == "MalformedReplyError"
        assert failure["retryable"] is True
        message = failure["message"]
        assert message.startswith(f"{garbage_server.base_url}/chat/completions answered HTTP 200 with a body "
                                  f"we cannot use: not JSON")
        excerpt = message.split("bytes): ", 1)[1]
        assert "502 Bad Gateway" in excerpt and len(excerpt) <= 300
