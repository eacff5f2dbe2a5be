"""``doctor`` as a user runs it (a subprocess): text and --json output, exit codes, the same Hydra
config and overrides as collect (``+key``, ``config_paths``), the embedded backend when no
``policy_base_url`` is set."""

from __future__ import annotations

from pathlib import Path

import orjson

from doctor_helpers import free_port


def test_healthy_server_text_output(run_cli, embedded_server):
    result = run_cli("doctor", f"policy_base_url={embedded_server.base_url}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert f"[PASS] 1 reachability {embedded_server.base_url}: the server is up" in out
    for number, check in enumerate(("reachability", "base_url", "model", "context", "tools", "reasoning",
                                    "training", "throughput", "fleet"), start=1):
        assert f"] {number} {check}" in out
    assert "0 FAIL" in out and out.rstrip().endswith("(exit 0)")


def test_json_output_and_exit_code_with_a_dead_server(run_cli, embedded_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    result = run_cli("doctor", "--json", f"policy_base_url=[{embedded_server.base_url},{dead}]")
    assert result.returncode == 1, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert report["ok"] is False and report["exit_code"] == 1
    assert report["servers"] == [embedded_server.base_url, dead]
    failed = {(f["check"], f["server"]) for f in report["findings"] if f["status"] == "FAIL"}
    assert ("reachability", dead) in failed and ("fleet", None) in failed
    assert ("reachability", embedded_server.base_url) not in failed
    refused = next(f for f in report["findings"] if f["check"] == "reachability" and f["server"] == dead)
    assert "refused" in refused["summary"] and refused["fix"]


def test_nemo_spelling_and_config_paths(run_cli, embedded_server, tmp_path: Path):
    extra = tmp_path / "fleet.yaml"
    extra.write_text(f"policy_base_url: {embedded_server.root_url}\npolicy_model_name: gym-tiny\n")
    result = run_cli("doctor", f"+config_paths=[{extra}]", "+doctor.json=true", "+num_samples_in_parallel=8")
    assert result.returncode == 1, result.stderr  # the URL in the file lacks /v1
    report = orjson.loads(result.stdout)
    failed = [(f["check"], f["fix"]) for f in report["findings"] if f["status"] == "FAIL"]
    assert failed == [("base_url", f"use {embedded_server.base_url} in policy_base_url "
                                   f"(policy_base_url={embedded_server.base_url})")]
    assert report["model"] == "gym-tiny"


def test_config_error_exits_2(run_cli):
    result = run_cli("doctor", "doctor.timeout_s=0")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "doctor.timeout_s" in result.stderr
    assert result.stdout == ""


def test_embedded_backend_when_no_url(run_cli):
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: policy_base_url is null, so doctor started the embedded backend" in result.stdout
    assert "1 server from the embedded demo backend, model 'gym-tiny'" in result.stdout
