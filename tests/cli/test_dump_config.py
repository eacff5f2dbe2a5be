"""``dump_config`` as a user runs it (a subprocess): composed YAML, secrets masked, deterministic,
both override spellings, one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import yaml

EXTRA = "num_repeats: 9\nresponses_create_params:\n  max_output_tokens: 1000\n"


def _knobs(prefix: str, extra: Path) -> list[str]:
    return [f"{prefix}{arg}" for arg in (
        "input_jsonl_fpath=/data/tasks.jsonl", "output_jsonl_fpath=/data/out.jsonl", "limit=3",
        "num_repeats=4", "num_samples_in_parallel=7", "responses_create_params.temperature=0.25",
        "policy_base_url=[http://10.0.0.1:8000/v1,http://10.0.0.2:8000/v1]", "policy_api_key=sk-knob",
        "policy_model_name=Qwen/Qwen3-0.6B", f"config_paths=[{extra}]",
    )]


def test_both_spellings_identical_and_deterministic(run_cli, tmp_path: Path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(EXTRA)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    plain = run_cli("dump_config", *_knobs("", extra), cwd=cwd)
    plus = run_cli("dump_config", *_knobs("+", extra), cwd=cwd)
    again = run_cli("dump_config", *_knobs("", extra), cwd=cwd)
    for result in (plain, plus, again):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no Hydra warnings, no logging
    assert plain.stdout == plus.stdout == again.stdout
    cfg = yaml.safe_load(plain.stdout)
    assert (cfg["limit"], cfg["num_repeats"], cfg["num_samples_in_parallel"]) == (3, 4, 7)  # CLI over file
    assert cfg["responses_create_params"] == {"max_output_tokens": 1000, "temperature": 0.25}
    assert cfg["model"]["base_url"] == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert cfg["model"]["model"] == "Qwen/Qwen3-0.6B"
    assert cfg["policy_api_key"] == cfg["model"]["api_key"] == "****"
    assert list(cwd.iterdir()) == []  # dump_config writes nothing


def test_masking(run_cli):
    result = run_cli(
        "dump_config", "policy_api_key=sk-secret-1",
        '+model.extra_body.headers.Authorization="Bearer sk-secret-2"',
        "+model.extra_body.headers.X-Team=rl", "+model.extra_body.hf_token=hf_secret_3",
        "+model.extra_body.wandb_api_key=secret-4", "+resource.params.api_key=secret-5",
        "responses_create_params.max_output_tokens=333", "model.return_token_id_information=true",
        "+model.extra_body.max_tokens=44",
    )
    # resource.params is handed to the resource class, which refuses unknown params only when loaded,
    # so dump_config still prints it (masked)
    assert result.returncode == 0, result.stderr
    for secret in ("sk-secret", "hf_secret", "secret-4", "secret-5"):
        assert secret not in result.stdout
    cfg = yaml.safe_load(result.stdout)
    body = cfg["model"]["extra_body"]
    assert body["headers"] == {"Authorization": "****", "X-Team": "rl"}
    assert (body["hf_token"], body["wandb_api_key"], body["max_tokens"]) == ("****", "****", 44)
    assert cfg["policy_api_key"] == cfg["model"]["api_key"] == cfg["resource"]["params"]["api_key"] == "****"
    assert cfg["responses_create_params"]["max_output_tokens"] == 333
    assert cfg["model"]["return_token_id_information"] is True


def test_unknown_keys_exit_2_with_a_hint(run_cli):
    for script, arg, hint in (("dump_config", "num_repets=3", "num_repeats"),
                              ("dump_config", "+model.retrun_token_id_information=true",
                               "model.return_token_id_information"),
                              ("collect", "+num_samples_in_paralel=3", "num_samples_in_parallel"),
                              ("collect", "model=vllm_for_trainig", "model=vllm_for_training")):
        result = run_cli(script, arg)
        assert result.returncode == 2, (script, arg, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert f"Did you mean '{hint}'?" in lines[0]
        assert result.stdout == ""


def test_config_paths_errors_exit_2_on_one_line(run_cli, tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("limit: 3\nmodel: {a: 1\n")
    for arg, needle in ((f"+config_paths=[{tmp_path / 'missing.yaml'}]", "missing.yaml"),
                        (f"config_paths=[{broken}]", f"{broken} line ")):
        result = run_cli("dump_config", arg)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], result.stderr


def test_interpolations_on_the_command_line(run_cli):
    """Hydra keeps the typed overrides in an OmegaConf list: reading them back must not resolve them."""
    ok = run_cli("dump_config", "policy_model_name=m1", "output_jsonl_fpath=/data/${policy_model_name}.jsonl",
                 "+agent_name=${policy_model_name}_agent")
    assert ok.returncode == 0, ok.stderr
    cfg = yaml.safe_load(ok.stdout)
    assert (cfg["output_jsonl_fpath"], cfg["agent_name"]) == ("/data/m1.jsonl", "m1_agent")
    bad = run_cli("dump_config", "limit=${nope}")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "'nope' not found" in lines[0] and "limit" in lines[0], bad.stderr
