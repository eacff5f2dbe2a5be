"""``env.yaml`` as a user meets it: the console scripts (real subprocesses) read it from their
working directory, say so on stderr (once, also in a multirun), contact the fleet it names,
mask its secrets in ``dump_config``, and stop on a malformed one with one line."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest
import yaml

MODEL_YAML = """\
policy_model:
  responses_api_models:
    vllm_model:
      entrypoint: app.py
      base_url: ${policy_base_url}
      api_key: ${policy_api_key}
      model: ${policy_model_name}
      return_token_id_information: true
      uses_reasoning_parser: true
"""


def _notes(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("note: ")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dump_config_reads_env_yaml_and_masks_its_secrets(run_cli, tmp_path: Path):
    (tmp_path / "vllm_model_for_training.yaml").write_text(MODEL_YAML)
    (tmp_path / "env.yaml").write_text(
        "policy_base_url: http://gpu-7:8000/v1\npolicy_api_key: sk-env-secret\npolicy_model_name: Qwen/Qwen3-8B\n"
        "hf_token: hf_env_secret\nwandb_api_key: wandb-secret\nconfig_paths: [vllm_model_for_training.yaml]\n")
    result = run_cli("dump_config", "num_repeats=3")
    assert result.returncode == 0, result.stderr
    notes = _notes(result.stderr)
    assert notes and notes[0].startswith(f"note: loaded {(tmp_path / 'env.yaml').resolve()} ")
    assert len(result.stderr.splitlines()) == len(notes) == 3, result.stderr  # loaded, model block, env keys
    assert any("hf_token" in n and "wandb_api_key" in n and "not applicable" in n for n in notes)
    assert any("vllm_model_for_training.yaml" in n and "entrypoint" in n for n in notes)
    for secret in ("sk-env-secret", "hf_env_secret", "wandb-secret"):
        assert secret not in result.stdout and secret not in result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["model"]["base_url"] == "http://gpu-7:8000/v1" and cfg["model"]["model"] == "Qwen/Qwen3-8B"
    assert cfg["model"]["return_token_id_information"] is True and cfg["num_repeats"] == 3
    assert cfg["policy_api_key"] == cfg["model"]["api_key"] == "****"
    assert cfg["config_paths"] == ["vllm_model_for_training.yaml"]


def test_collect_contacts_the_fleet_env_yaml_names(run_cli, tmp_path: Path, embedded_server):
    (tmp_path / "env.yaml").write_text(f"policy_base_url: {embedded_server.base_url}\n")
    out = tmp_path / "out" / "rollouts.jsonl"
    result = run_cli("collect", "limit=2", f"output_jsonl_fpath={out}", "progress=off")
    assert result.returncode == 0, result.stderr
    notes = _notes(result.stderr)
    assert len(notes) == 1 and "env.yaml" in notes[0] and notes[0].startswith("note: loaded ")
    rows = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    assert {s for row in rows for s in row["_gr"]["servers"]} == {embedded_server.base_url}


def test_collect_does_not_fall_back_to_the_embedded_backend(run_cli, tmp_path: Path):
    """The silent difference this fixes: a fleet named in env.yaml that is down is an error, not a
    run on the embedded toy model."""
    (tmp_path / "env.yaml").write_text(f"policy_base_url: http://127.0.0.1:{_free_port()}/v1\n")
    result = run_cli("collect", "limit=1", f"output_jsonl_fpath={tmp_path / 'o.jsonl'}", "progress=off")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert _notes(result.stderr)[0].startswith("note: loaded ")
    assert "cannot reach the vLLM server" in result.stderr


def test_doctor_prints_the_env_yaml_line(run_cli, tmp_path: Path, embedded_server):
    (tmp_path / "env.yaml").write_text(f"policy_base_url: {embedded_server.base_url}\nverbose: true\n")
    result = run_cli("doctor")
    notes = _notes(result.stderr)
    assert notes[0].startswith(f"note: loaded {(tmp_path / 'env.yaml').resolve()} ")
    assert any("verbose" in n and "not applicable" in n for n in notes)
    assert "from policy_base_url" in result.stdout and result.returncode in (0, 1), result.stdout


def test_multirun_prints_each_note_once(run_cli, tmp_path: Path, embedded_server):
    (tmp_path / "env.yaml").write_text(f"policy_base_url: {embedded_server.base_url}\nhf_token: hf_x\n")
    result = run_cli("collect", "-m", "num_repeats=1,2", "limit=1", "progress=off",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr
    notes = _notes(result.stderr)
    assert len(notes) == 2 and len(set(notes)) == 2, result.stderr
    assert len(list((tmp_path / "sweep").glob("*/rollouts.jsonl"))) == 2


@pytest.mark.parametrize("script", ["dump_config", "collect", "doctor"])
def test_malformed_env_yaml_is_one_line(run_cli, tmp_path: Path, script: str):
    (tmp_path / "env.yaml").write_text("policy_base_url: http://a/v1\npolicy_api_key: [sk\nlimit: 2\n")
    result = run_cli(script)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: env.yaml: YAML syntax error in "), result.stderr
    assert f"{(tmp_path / 'env.yaml').resolve()} line " in lines[0]
    assert result.stdout == ""


def test_without_env_yaml_nothing_is_printed(run_cli, tmp_path: Path):
    result = run_cli("dump_config")
    assert result.returncode == 0 and result.stderr == ""
