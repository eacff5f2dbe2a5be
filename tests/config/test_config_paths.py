"""``config_paths``: files merged over conf/ in order (later wins), the command line over both;
NeMo Gym's model YAML maps onto ``model.*``; everything else fails with a precise one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.errors import ConfigError

NEMO_MODEL_YAML = """\
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


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_later_file_wins_and_command_line_wins(tmp_path: Path):
    a = _write(tmp_path, "a.yaml", "num_repeats: 2\nlimit: 5\nmodel:\n  temperature: 0.1\n")
    b = _write(tmp_path, "b.yaml", "num_repeats: 3\nmodel:\n  top_p: 0.5\n")
    raw = compose_plain([f"+config_paths=[{a},{b}]"])
    assert (raw["num_repeats"], raw["limit"]) == (3, 5)
    assert (raw["model"]["temperature"], raw["model"]["top_p"]) == (0.1, 0.5)
    raw = compose_plain([f"+config_paths=[{b},{a}]"])
    assert raw["num_repeats"] == 2
    for spelled in ("num_repeats=7", "+num_repeats=7", "++num_repeats=7"):
        raw = compose_plain([spelled, f"config_paths=[{a},{b}]", "model.temperature=0.9"])
        assert (raw["num_repeats"], raw["limit"], raw["model"]["temperature"]) == (7, 5, 0.9)
    # the command line also wins when it comes first
    raw = compose_plain(["limit=1", f"config_paths=[{a}]"])
    assert raw["limit"] == 1


def test_files_win_over_group_defaults(tmp_path: Path):
    f = _write(tmp_path, "f.yaml", "model:\n  return_token_id_information: true\nagent:\n  max_steps: 3\n")
    cfg = build_collect_config(compose_plain([f"config_paths=[{f}]"]))
    assert cfg.model.return_token_id_information and cfg.agent.max_steps == 3


def test_nemo_gym_model_yaml_maps_onto_model(tmp_path: Path):
    f = _write(tmp_path, "vllm_model_for_training.yaml", NEMO_MODEL_YAML)
    env = _write(tmp_path, "env.yaml", "policy_base_url: http://gpu-1:8000/v1\npolicy_api_key: sk-x\n"
                                       "policy_model_name: Qwen/Qwen3-8B\n")
    cfg = build_collect_config(compose_plain([f"+config_paths=[{env},{f}]"]))
    assert cfg.model.base_url == ("http://gpu-1:8000/v1",)
    assert (cfg.model.api_key, cfg.model.model) == ("sk-x", "Qwen/Qwen3-8B")
    assert cfg.model.return_token_id_information and cfg.model.uses_reasoning_parser
    # the interpolations follow the command line, which wins over both files
    cfg = build_collect_config(compose_plain([f"config_paths=[{env},{f}]",
                                              "policy_base_url=[http://a:1/v1,http://b:2/v1]"]))
    assert cfg.model.base_url == ("http://a:1/v1", "http://b:2/v1")


def test_stock_nemo_gym_vllm_model_yaml_is_accepted(tmp_path: Path):
    """NeMo Gym's own vllm_model.yaml: launcher-only fields are dropped, no-op values accepted."""
    f = _write(tmp_path, "vllm_model.yaml", NEMO_MODEL_YAML.replace("entrypoint: app.py", (
        "entrypoint: app.py\n      num_workers: 8\n      uses_interleaved_reasoning: true\n"
        "      chat_template_kwargs: null\n      extra_body: null\n      default_headers: {}")))
    cfg = build_collect_config(compose_plain([f"config_paths=[{f}]", "policy_base_url=http://h:8000/v1"]))
    assert cfg.model.uses_interleaved_reasoning and dict(cfg.model.extra_body) == {}


def _error(tmp_path: Path, text: str | None, name: str = "c.yaml") -> str:
    path = tmp_path / name if text is None else _write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        build_collect_config(compose_plain([f"+config_paths=[{path}]"]))
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_missing_file(tmp_path: Path):
    message = _error(tmp_path, None, "nope.yaml")
    assert "file not found" in message and "nope.yaml" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    message = _error(tmp_path, "num_repeats: 2\nlimit: 3\nmodel: [1, 2\nagent: {}\n", "broken.yaml")
    assert "broken.yaml" in message and "YAML syntax error" in message
    assert "line 4" in message or "line 3" in message


def test_nemo_gym_resources_server_block_is_refused(tmp_path: Path):
    message = _error(tmp_path, "math_resources:\n  resources_servers:\n    math_with_judge:\n"
                               "      entrypoint: app.py\n")
    assert "resources server 'math_resources'" in message and "math_with_judge" in message
    assert "resource=" in message


def test_nemo_gym_agent_block_is_refused(tmp_path: Path):
    message = _error(tmp_path, "simple_agent:\n  responses_api_agents:\n    simple_agent:\n      entrypoint: app.py\n")
    assert "agent server 'simple_agent'" in message


def test_unsupported_vllm_model_field_is_named(tmp_path: Path):
    message = _error(tmp_path, NEMO_MODEL_YAML + "      spinup_server: true\n")
    assert "policy_model.responses_api_models.vllm_model.spinup_server is not supported" in message
    message = _error(tmp_path, NEMO_MODEL_YAML + "      default_headers: {X-Team: rl}\n")
    assert "vllm_model.default_headers" in message


def test_other_model_server_name_is_refused(tmp_path: Path):
    message = _error(tmp_path, NEMO_MODEL_YAML.replace("policy_model:", "judge_model:"))
    assert "'judge_model'" in message and "policy_model" in message


def test_non_vllm_model_implementation_is_refused(tmp_path: Path):
    message = _error(tmp_path, NEMO_MODEL_YAML.replace("vllm_model:", "openai_model:"))
    assert "openai_model" in message and "vllm_model" in message


def test_unknown_key_in_a_file_gets_a_hint(tmp_path: Path):
    message = _error(tmp_path, "num_repets: 2\n")
    assert "Did you mean 'num_repeats'?" in message


def test_top_level_list_is_refused(tmp_path: Path):
    assert "mapping" in _error(tmp_path, "- a\n- b\n")


def test_files_may_add_keys_inside_free_mappings(tmp_path: Path):
    """conf/ declares ``responses_create_params: {}``; a file filling it must merge (Hydra hands
    over a struct-mode config, which would refuse every new key)."""
    f = _write(tmp_path, "f.yaml", "responses_create_params:\n  max_output_tokens: 256\n  temperature: 0.7\n"
                                   "model:\n  extra_body:\n    top_k: 20\n")
    cfg = build_collect_config(compose_plain([f"config_paths=[{f}]", "+responses_create_params.temperature=0.2"]))
    assert dict(cfg.responses_create_params) == {"max_output_tokens": 256, "temperature": 0.2}
    assert dict(cfg.model.extra_body) == {"top_k": 20}


def test_scalar_file_is_refused(tmp_path: Path):
    assert "must hold a mapping" in _error(tmp_path, "hello\n")


def test_empty_file_is_a_no_op(tmp_path: Path):
    f = _write(tmp_path, "empty.yaml", "# nothing yet\n")
    assert compose_plain([f"config_paths=[{f}]"])["limit"] == compose_plain([])["limit"]


def test_broken_interpolation_in_a_file_is_one_line(tmp_path: Path):
    assert "(at limit)" in _error(tmp_path, "limit: ${nowhere}\n")
    assert "bad.yaml" in _error(tmp_path, "a: ${oops\n", "bad.yaml")
