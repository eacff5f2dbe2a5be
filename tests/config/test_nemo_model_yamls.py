"""NeMo Gym's ``vllm_model`` YAMLs load unchanged through ``config_paths``: each field honoured
(mapped onto ``model.*``), accepted and named in one notice line, or refused with what to do.

The YAMLs below are written here with the keys and values of NeMo Gym's files (0.4.0 wheel and
GitHub main); the wheel's own files are loaded too when a NeMo Gym install is found."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest
import yaml

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.nemo_keys import VLLM_MODEL_RULES
from gym_rollouts.config.notices import Notices
from gym_rollouts.config.schema import ModelConfig, build_collect_config
from gym_rollouts.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
_BASE = {"entrypoint": "app.py", "base_url": "${policy_base_url}", "api_key": "${policy_api_key}",
         "model": "${policy_model_name}"}

# name -> (vllm_model fields, model values expected, fields expected in the not-applicable notice)
NEMO_GYM_FILES: dict[str, tuple[dict[str, Any], dict[str, Any], set[str]]] = {
    "0.4.0 vllm_model.yaml": (
        {**_BASE, "return_token_id_information": False, "uses_reasoning_parser": True,
         "uses_interleaved_reasoning": True, "chat_template_kwargs": None, "extra_body": None, "default_headers": {}},
        {"return_token_id_information": False, "uses_reasoning_parser": True, "extra_body": {}},
        {"entrypoint", "default_headers"}),
    "0.4.0 vllm_model_for_training.yaml": (
        {**_BASE, "return_token_id_information": True, "uses_reasoning_parser": True},
        {"return_token_id_information": True}, {"entrypoint"}),
    "main vllm_model.yaml": (
        {**_BASE, "return_token_id_information": False, "uses_reasoning_parser": True,
         "uses_interleaved_reasoning": True, "chat_template_kwargs": None, "sampling_overrides": None,
         "extra_body": None, "default_headers": {}},
        {"sampling_overrides": {}, "chat_template_kwargs": {}}, {"entrypoint", "default_headers"}),
    "main vllm_model_for_training.yaml": (
        {**_BASE, "return_token_id_information": True, "request_prompt_and_generation_token_ids": False,
         "uses_reasoning_parser": True},
        {"return_token_id_information": True}, {"entrypoint", "request_prompt_and_generation_token_ids"}),
    "vllm_model_for_training.yaml, inline token ids on": (
        {**_BASE, "return_token_id_information": True, "request_prompt_and_generation_token_ids": True,
         "uses_reasoning_parser": True},
        {"return_token_id_information": True}, {"entrypoint", "request_prompt_and_generation_token_ids"}),
    "main vllm_model_completions.yaml": (
        {**_BASE, "return_token_id_information": False, "uses_reasoning_parser": False,
         "uses_interleaved_reasoning": False, "use_completions_api": True, "chat_template_kwargs": None,
         "extra_body": None},
        {"use_completions_api": True, "uses_reasoning_parser": False, "uses_interleaved_reasoning": False},
        {"entrypoint"}),
    "vllm_model_for_training.yaml, reasoning on/off": (
        {**_BASE, "return_token_id_information": True, "uses_reasoning_parser": True,
         "chat_template_kwargs": {"enable_thinking": True, "truncate_history_thinking": False},
         "sequential_reasoning_allowed": False},
        {"chat_template_kwargs": {"enable_thinking": True, "truncate_history_thinking": False}},
        {"entrypoint", "sequential_reasoning_allowed"}),
}
RUN = ["policy_base_url=http://gpu-1:8000/v1", "policy_api_key=sk-1", "policy_model_name=Qwen/Qwen3-8B"]


def _model_yaml(fields: dict[str, Any], block: str = "policy_model", impl: str = "vllm_model") -> str:
    return yaml.safe_dump({block: {"responses_api_models": {impl: fields}}}, sort_keys=False)


def _load(tmp_path: Path, text: str, *overrides: str, name: str = "m.yaml"):
    path = tmp_path / name
    path.write_text(text)
    notices = Notices()
    cfg = build_collect_config(compose_plain([f"+config_paths=[{path}]", *RUN, *overrides], cwd=tmp_path,
                                             notices=notices))
    return cfg, [ln for ln in notices if "not applicable" in ln or "not used" in ln]


@pytest.mark.parametrize("name", sorted(NEMO_GYM_FILES))
def test_nemo_gym_model_yaml_loads(tmp_path: Path, name: str):
    fields, expected, not_applicable = NEMO_GYM_FILES[name]
    text = _model_yaml(fields)
    if "reasoning on/off" in name:  # the second block of that file: a policy with thinking off
        text += _model_yaml({**fields, "chat_template_kwargs": {"enable_thinking": False}},
                            block="policy_model_reasoning_off")
    cfg, lines = _load(tmp_path, text)
    assert cfg.model.base_url == ("http://gpu-1:8000/v1",)
    assert (cfg.model.api_key, cfg.model.model) == ("sk-1", "Qwen/Qwen3-8B")
    for key, value in expected.items():
        assert getattr(cfg.model, key) == value, key
    block_lines = [ln for ln in lines if "vllm_model: accepted, not applicable" in ln]
    assert len(block_lines) == 1
    named = {f for f in fields if f"{f} (" in block_lines[0] or f"{f}, " in block_lines[0]}
    assert named == not_applicable
    # every field is honoured or named: none silently dropped
    assert set(fields) <= set(ModelConfig.__dataclass_fields__) | not_applicable
    if "reasoning on/off" in name:
        assert any("'policy_model_reasoning_off' (vllm_model) accepted, not used" in ln for ln in lines)


def _installed_wheel_configs() -> list[str]:
    """vllm_model configs of an installed NeMo Gym: the repository's .venv-nemo-gym, or /tmp/ngvenv."""
    found: list[str] = []
    for root in (REPO / ".venv-nemo-gym", Path("/tmp/ngvenv")):
        found += glob.glob(str(root / "lib/python*/site-packages/responses_api_models/vllm_model/configs/*.yaml"))
    return sorted(found)


@pytest.mark.skipif(not _installed_wheel_configs(), reason="NeMo Gym is not installed (.venv-nemo-gym, /tmp/ngvenv)")
@pytest.mark.parametrize("path", _installed_wheel_configs() or ["none"])
def test_installed_nemo_gym_model_yaml_loads(tmp_path: Path, path: str):
    notices = Notices()
    cfg = build_collect_config(compose_plain([f"+config_paths=[{path}]", *RUN], cwd=tmp_path, notices=notices))
    assert cfg.model.base_url == ("http://gpu-1:8000/v1",) and cfg.model.model == "Qwen/Qwen3-8B"
    fields = yaml.safe_load(Path(path).read_text())["policy_model"]["responses_api_models"]["vllm_model"]
    line = next(ln for ln in notices if "not applicable" in ln)
    for field in fields:
        assert field in ModelConfig.__dataclass_fields__ or field in line, field


@pytest.mark.parametrize(("field", "value"), [
    ("host", "127.0.0.1"), ("port", 19071), ("name", "policy_model"), ("num_workers", 8), ("domain", "math"),
    ("sequential_reasoning_allowed", True), ("request_prompt_and_generation_token_ids", True),
    ("preserve_reasoning_in_assistant_content", False), ("preserve_reasoning_in_assistant_content", True),
    ("tokenizer", "Qwen/Qwen3-8B"), ("is_responses_native", False), ("default_headers", None),
    ("audio_root", None), ("render_chat_template", False), ("supply_prefix_token_ids", False),
])
def test_accepted_fields_are_named(tmp_path: Path, field: str, value: Any):
    cfg, lines = _load(tmp_path, _model_yaml({**_BASE, field: value}))
    assert len(lines) == 1 and f"{field} (" in lines[0].replace(f"{field}, ", f"{field} (")
    assert cfg.model == build_collect_config(compose_plain([*RUN], cwd=tmp_path)).model  # changes nothing


@pytest.mark.parametrize(("fields", "needles"), [
    ({"is_responses_native": True}, ("is_responses_native=True is not supported", "chat/completions")),
    ({"default_headers": {"X-Team": "rl"}}, ("default_headers={'X-Team': 'rl'}", "policy_api_key")),
    ({"audio_root": "/data/audio"}, ("audio_root='/data/audio'", "audio inputs")),
    ({"render_chat_template": True, "use_completions_api": True}, ("render_chat_template=True", "false")),
    ({"supply_prefix_token_ids": True}, ("supply_prefix_token_ids=True", "required_prefix_token_ids")),
    ({"preserve_reasoning_in_assistant_content": True, "uses_interleaved_reasoning": False},
     ("uses_interleaved_reasoning: true",)),
    ({"spinup_server": True, "server_args": {}}, ("vllm_model.spinup_server is not supported",
                                                  "vllm_model.server_args is not supported")),
])
def test_fields_we_cannot_honour_are_refused_together(tmp_path: Path, fields: dict, needles: tuple[str, ...]):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, _model_yaml({**_BASE, **fields}))
    message = str(info.value)
    assert "\n" not in message and "m.yaml" in message
    for needle in needles:
        assert needle in message, message


def test_every_rule_is_exercised():
    """The tables above cover every key of VLLM_MODEL_RULES (a new rule needs a test)."""
    tested = {"entrypoint", "host", "port", "name", "num_workers", "domain", "sequential_reasoning_allowed",
              "request_prompt_and_generation_token_ids", "preserve_reasoning_in_assistant_content", "tokenizer",
              "is_responses_native", "default_headers", "audio_root", "render_chat_template",
              "supply_prefix_token_ids"}
    assert set(VLLM_MODEL_RULES) - tested <= {"description", "datasets"}


def test_command_line_policy_model_block_wins(tmp_path: Path):
    text = _model_yaml({**_BASE, "return_token_id_information": True, "uses_reasoning_parser": True})
    cfg, _ = _load(tmp_path, text, "++policy_model.responses_api_models.vllm_model.return_token_id_information=false")
    assert cfg.model.return_token_id_information is False
    cfg, _ = _load(tmp_path, text, "model.return_token_id_information=false")
    assert cfg.model.return_token_id_information is False


def test_policy_block_wins_over_plain_model_of_the_same_file(tmp_path: Path):
    text = "model:\n  top_p: 0.5\n  return_token_id_information: false\n" + _model_yaml(
        {**_BASE, "return_token_id_information": True})
    cfg, _ = _load(tmp_path, text)
    assert cfg.model.return_token_id_information is True and cfg.model.top_p == 0.5


def test_secondary_model_without_a_policy_is_refused(tmp_path: Path):
    for block in ("judge_model", "openai_model"):  # openai_model: NeMo Gym's early name of the policy block
        with pytest.raises(ConfigError, match=f"'{block}'.* no 'policy_model' block.*rename"):
            _load(tmp_path, _model_yaml({**_BASE, "return_token_id_information": True}, block=block))


def test_secondary_model_next_to_a_policy_from_another_file_is_accepted(tmp_path: Path):
    judge = tmp_path / "judge.yaml"
    judge.write_text(_model_yaml({**_BASE, "model": "judge-70b"}, block="judge_model"))
    cfg, lines = _load(tmp_path, _model_yaml({**_BASE, "return_token_id_information": True}),
                       f"config_paths=[{tmp_path / 'm.yaml'},{judge}]")
    assert cfg.model.model == "Qwen/Qwen3-8B"
    assert any("'judge_model' (vllm_model) accepted, not used" in ln for ln in lines)


def test_other_model_implementation_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="implementation 'openai_model' is not supported"):
        _load(tmp_path, _model_yaml(_BASE, impl="openai_model"))
