"""No file a run or a sweep writes, and nothing it prints, holds the API key (issue 12, items 1-2).

Real ``collect`` / ``doctor`` subprocesses against an embedded server whose every generation
answer is a 500 echoing the request's Authorization header and bare key ("echo_auth" fault), so
the key travels back into error messages, failure rows and log lines. The key is given literally
on the command line, in a ``config_paths`` file and as ``${oc.env:VAR}``; runs use
``hydra.verbose=true``. Each test reads EVERY file under the directory the command ran in (run
dir, sweep dir, Hydra's files) plus stdout/stderr and looks for the key's random part, and checks
through the server's stats that the key was still sent (as the SHA-256 of its header)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from gym_rollouts.embedded import EmbeddedConfig, EmbeddedProcess, embedded_subprocess

POLICY_VAR = "GYM_ROLLOUTS_SECRET_POLICY_API_KEY"
ROWS = 4


@pytest.fixture(scope="module")
def echo_server() -> Iterator[EmbeddedProcess]:
    with embedded_subprocess(EmbeddedConfig(fault_rate=1.0, fault_kinds=("echo_auth",))) as server:
        yield server


def new_key(how: str) -> str:
    return f"sk-gr-{how}-{uuid.uuid4().hex}"


def fragment(key: str) -> str:
    """The random part of a key: found anywhere, even truncated or re-quoted, it is a leak."""
    return key.rsplit("-", 1)[1][:12]


def tasks(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for i in range(ROWS):
            fh.write(orjson.dumps({"responses_create_params": {"input": f"What is {i} + {i}?"},
                                   "expected_answer": str(2 * i)}) + b"\n")
    return path


def run(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith(POLICY_VAR)}
    full_env.update(env or {})
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", f"gym_rollouts.cli.{module}", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def collect_args(server: EmbeddedProcess, inputs: Path, *extra: str) -> list[str]:
    return [f"policy_base_url={server.base_url}", f"input_jsonl_fpath={tasks(inputs / 'in.jsonl')}",
            "resource=exact_match", f"limit={ROWS}", "max_attempts=1", "transport.retry_budget.status_5xx=0",
            "progress=lines", "hydra.verbose=true", *extra]


def assert_nowhere(key: str, root: Path, proc: subprocess.CompletedProcess) -> list[Path]:
    """No file under ``root`` and neither output stream holds the key; returns the files read."""
    files = [p for p in root.rglob("*") if p.is_file()]
    needle = fragment(key)
    leaks = [str(p.relative_to(root)) for p in files if needle.encode() in p.read_bytes()]
    assert not leaks, f"the key is in {leaks}"
    assert needle not in proc.stdout, proc.stdout
    assert needle not in proc.stderr, proc.stderr
    return files


def server_saw(server: EmbeddedProcess, key: str) -> int:
    with urllib.request.urlopen(server.root_url + "/_admin/stats", timeout=10) as resp:
        seen = json.loads(resp.read())["authorization_sha256"]
    return seen.get(hashlib.sha256(f"Bearer {key}".encode()).hexdigest(), 0)


def test_the_echo_server_really_echoes_the_key(echo_server: EmbeddedProcess) -> None:
    request = urllib.request.Request(echo_server.base_url + "/chat/completions", data=b"{}", method="POST",
                                     headers={"Authorization": "Bearer sk-echo-probe-1234"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    body = err.value.read().decode()
    assert err.value.code == 500 and body.count("sk-echo-probe-1234") == 2, body


@pytest.mark.parametrize("how", ["literal", "config_paths", "env_reference"])
def test_a_run_writes_and_prints_no_key(echo_server: EmbeddedProcess, tmp_path: Path, how: str) -> None:
    key, inputs, out = new_key(how), tmp_path / "inputs", tmp_path / "out"
    env: dict[str, str] = {}
    if how == "literal":
        given = [f"policy_api_key={key}"]
    elif how == "config_paths":
        (inputs / "secret.yaml").parent.mkdir(parents=True, exist_ok=True)
        (inputs / "secret.yaml").write_text(f"policy_api_key: {key}\n")
        given = [f"+config_paths=[{inputs / 'secret.yaml'}]"]
    else:
        env = {"GR_TEST_POLICY_KEY": key}
        given = ["policy_api_key=${oc.env:GR_TEST_POLICY_KEY}"]
    proc = run("collect", *collect_args(echo_server, inputs, *given, f"hydra.run.dir={out}/run"), cwd=out, env=env)
    assert proc.returncode == 3, proc.stderr  # every rollout failed on the echoing server
    files = assert_nowhere(key, out, proc)
    names = {p.name for p in files}
    assert {"config.yaml", "overrides.yaml", "hydra.yaml", "app.log", "rollouts_failures.jsonl",
            "rollouts_run.json", "rollouts_aggregate_metrics.json"} <= names
    failures = (out / "run" / "rollouts_failures.jsonl").read_text()
    assert failures.count("rejected key **** (request headers: {'Authorization': 'Bearer ****'})") == ROWS
    assert "Bearer ****" in (out / "run" / "app.log").read_text()  # hydra.verbose: the failed attempts logged
    overrides = (out / "run" / ".hydra" / "overrides.yaml").read_text()
    if how == "literal":
        assert f"++policy_api_key=${{oc.env:{POLICY_VAR}}}" in overrides
    elif how == "env_reference":
        assert "++policy_api_key=${oc.env:GR_TEST_POLICY_KEY}" in overrides  # as typed
    assert server_saw(echo_server, key) >= ROWS + 1  # /models at start-up and every generation


def test_a_refused_run_writes_and_prints_no_key(echo_server: EmbeddedProcess, tmp_path: Path) -> None:
    key, out = new_key("refused"), tmp_path / "out"
    proc = run("collect", *collect_args(echo_server, tmp_path / "inputs", f"policy_api_key={key}",
                                        "num_repets=2", f"hydra.run.dir={out}/run"), cwd=out)
    assert proc.returncode == 2 and "Did you mean 'num_repeats'?" in proc.stderr, proc.stderr
    files = assert_nowhere(key, out, proc)
    assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in files}


def test_a_sweep_writes_and_prints_no_key(echo_server: EmbeddedProcess, tmp_path: Path) -> None:
    key, out = new_key("sweep"), tmp_path / "out"
    proc = run("collect", "-m", *collect_args(echo_server, tmp_path / "inputs", f"policy_api_key={key}",
                                              "num_repeats=1,2", f"hydra.sweep.dir={out}/sweep"), cwd=out)
    assert proc.returncode == 3, proc.stderr
    files = assert_nowhere(key, out, proc)
    names = [p.name for p in files]
    assert {"multirun.yaml", "sweep_summary.csv", "sweep_summary.json"} <= set(names)
    assert names.count("sweep_job.json") == names.count("rollouts_failures.jsonl") == 2
    assert f"${{oc.env:{POLICY_VAR}}}" in (out / "sweep" / "multirun.yaml").read_text()
    assert server_saw(echo_server, key) >= 3 * ROWS  # 4 + 8 rollouts


def test_a_stopped_run_prints_a_resume_command_without_the_key(tmp_path: Path) -> None:
    key, out = new_key("stopped"), tmp_path / "out"
    with embedded_subprocess(EmbeddedConfig(tool_parser=False)) as server:  # refuses tools: the run stops
        proc = run("collect", f"policy_base_url={server.base_url}", f"policy_api_key={key}", "resource=weather",
                   "limit=2", "progress=off", f"hydra.run.dir={out}/run", cwd=out)
        sent = server_saw(server, key)
    assert proc.returncode == 2, proc.stderr
    assert_nowhere(key, out, proc)
    assert "resume_from_cache=true" in proc.stderr
    assert f"'policy_api_key=${{oc.env:{POLICY_VAR}}}'" in proc.stderr
    assert f"export {POLICY_VAR}=<the key> first" in proc.stderr
    assert sent >= 1


@pytest.mark.parametrize("output", ["text", "json"])
def test_doctor_prints_no_key(echo_server: EmbeddedProcess, tmp_path: Path, output: str) -> None:
    key, out = new_key(f"doctor-{output}"), tmp_path / "out"
    proc = run("doctor", f"policy_base_url={echo_server.base_url}", f"policy_api_key={key}", "resource=exact_match",
               f"input_jsonl_fpath={tasks(tmp_path / 'inputs' / 'in.jsonl')}", "hydra.verbose=true",
               *(["--json"] if output == "json" else []), cwd=out)
    assert proc.returncode in (0, 1), proc.stderr
    assert_nowhere(key, out, proc)
    printed = " ".join(proc.stdout.split())  # the text report wraps long evidence lines
    assert "rejected key **** (request headers: {'Authorization': 'Bearer ****'})" in printed
    if output == "json":
        json.loads(proc.stdout)
    assert server_saw(echo_server, key) >= 1
