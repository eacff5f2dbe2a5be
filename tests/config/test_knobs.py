"""Every documented knob works spelled ``key=value``, NeMo Gym's ``+key=value`` and ``++key=value``,
and all spellings compose to the same value (in process, through the CLI's own normalisation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from gym_rollouts.config.compose import compose_plain, conf_dir
from gym_rollouts.config.overrides import (config_group_names, normalize_override, normalize_overrides,
                                           primary_default_groups)
from gym_rollouts.config.schema import build_collect_config

URL_A, URL_B = "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"

# (key, value as typed, path in the composed config, expected composed value)
KNOBS: list[tuple[str, str, str, Any]] = [
    ("input_jsonl_fpath", "/data/tasks.jsonl", "input_jsonl_fpath", "/data/tasks.jsonl"),
    ("output_jsonl_fpath", "/data/out/rollouts.jsonl", "output_jsonl_fpath", "/data/out/rollouts.jsonl"),
    ("limit", "3", "limit", 3),
    ("num_repeats", "4", "num_repeats", 4),
    ("num_samples_in_parallel", "7", "num_samples_in_parallel", 7),
    ("responses_create_params.temperature", "0.25", "responses_create_params", {"temperature": 0.25}),
    ("responses_create_params.max_output_tokens", "512", "responses_create_params", {"max_output_tokens": 512}),
    ("responses_create_params.top_p", "0.9", "responses_create_params", {"top_p": 0.9}),
    ("policy_base_url", URL_A, "model.base_url", URL_A),
    ("policy_base_url", f"[{URL_A},{URL_B}]", "model.base_url", [URL_A, URL_B]),
    ("policy_api_key", "sk-test-123", "model.api_key", "sk-test-123"),
    ("policy_model_name", "Qwen/Qwen3-0.6B", "model.model", "Qwen/Qwen3-0.6B"),
    ("resume_from_cache", "true", "resume_from_cache", True),
    ("agent_name", "my_agent", "agent_name", "my_agent"),
    ("model.return_token_id_information", "true", "model.return_token_id_information", True),
    ("model.chat_template_kwargs.enable_thinking", "false", "model.chat_template_kwargs", {"enable_thinking": False}),
    ("agent.max_steps", "5", "agent.max_steps", 5),
]


def _get(cfg: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize(("key", "value", "path", "expected"), KNOBS, ids=[f"{k}={v}" for k, v, _, _ in KNOBS])
def test_every_spelling_gives_the_same_value(key: str, value: str, path: str, expected: Any):
    spellings = {prefix: compose_plain([f"{prefix}{key}={value}"]) for prefix in ("", "+", "++")}
    assert spellings[""] == spellings["+"] == spellings["++"]
    raw = spellings["+"]
    assert _get(raw, path) == expected
    assert _get(raw, key.split(".")[0]) is not None
    build_collect_config(raw)  # and it is a valid typed config


def test_config_paths_both_spellings(tmp_path: Path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("num_repeats: 5\n")
    plain = compose_plain([f"config_paths=[{extra}]"])
    plus = compose_plain([f"+config_paths=[{extra}]"])
    assert plain == plus
    assert plus["config_paths"] == [str(extra)] and plus["num_repeats"] == 5
    assert build_collect_config(compose_plain([f"config_paths={extra}"])).config_paths == (str(extra),)


def test_policy_base_url_typed_forms():
    for spelled, urls in [(URL_A, (URL_A,)), (f"[{URL_A},{URL_B}]", (URL_A, URL_B)),
                          (f"'{URL_A},{URL_B}'", (URL_A, URL_B))]:
        cfg = build_collect_config(compose_plain([f"+policy_base_url={spelled}"]))
        assert cfg.model.base_url == urls and not cfg.uses_embedded_backend


def test_policy_api_key_reaches_the_model_config():
    cfg = build_collect_config(compose_plain(["+policy_api_key=sk-abc", "policy_model_name=m1"]))
    assert (cfg.model.api_key, cfg.model.model) == ("sk-abc", "m1")


def test_responses_create_params_fields_accumulate():
    raw = compose_plain(["+responses_create_params.temperature=0.5", "responses_create_params.max_output_tokens=64"])
    assert raw["responses_create_params"] == {"temperature": 0.5, "max_output_tokens": 64}


GROUPS = config_group_names(conf_dir())


@pytest.mark.parametrize(("arg", "expected"), [
    ("limit=3", "++limit=3"),
    ("+limit=3", "++limit=3"),
    ("++limit=3", "++limit=3"),
    ("+responses_create_params.temperature=0.2", "++responses_create_params.temperature=0.2"),
    ("policy_base_url=[http://a/v1,http://b/v1]", "++policy_base_url=[http://a/v1,http://b/v1]"),
    ("+model.extra_body.x=a=b", "++model.extra_body.x=a=b"),
    ("model=vllm_for_training", "model=vllm_for_training"),  # a group choice
    ("+experiment=foo", "+experiment=foo"),
    ("model/nested=x", "model/nested=x"),
    ("hydra.run.dir=.", "hydra.run.dir=."),
    ("hydra/launcher=basic", "hydra/launcher=basic"),
    ("~limit", "~limit"),
    ("-m", "-m"),
    ("--cfg", "--cfg"),
    ("model.temperature=0.2", "++model.temperature=0.2"),  # a value inside a group's node
])
def test_normalize_override(arg: str, expected: str):
    assert normalize_override(arg, GROUPS) == expected


def test_sweep_overrides_still_parse_after_rewriting():
    """``collect -m num_repeats=1,2`` reaches Hydra as ``++num_repeats=1,2``: still a sweep, and
    each of its values composes (the sweeps themselves are tested with the launcher)."""
    rewritten = normalize_overrides(["num_repeats=1,2", "+limit=2", "model=vllm,vllm_for_training"], GROUPS)
    parsed = OverridesParser.create().parse_overrides(rewritten)
    sweeps = {o.key_or_group: [str(v) for v in o.sweep_iterator()] for o in parsed if o.is_sweep_override()}
    assert sweeps == {"num_repeats": ["1", "2"], "model": ["vllm", "vllm_for_training"]}
    for repeats in ("1", "2"):
        assert compose_plain([f"num_repeats={repeats}", "+limit=2"])["num_repeats"] == int(repeats)


def test_group_choices_work_with_and_without_plus():
    chosen = primary_default_groups(conf_dir())
    assert {"model", "servers", "resource", "agent", "router"} <= chosen
    assert normalize_override("+model=vllm_for_training", GROUPS, chosen) == "model=vllm_for_training"
    assert normalize_override("model=vllm_for_training", GROUPS, chosen) == "model=vllm_for_training"
    assert compose_plain(["+model=vllm_for_training"]) == compose_plain(["model=vllm_for_training"])
    extra_groups = sorted(g for g in GROUPS - chosen - {"hydra", "local"} if any((conf_dir() / g).glob("*.yaml")))
    for group in extra_groups:  # groups the primary config does not choose (experiment, ...)
        option = sorted((conf_dir() / group).glob("*.yaml"))[0].stem
        assert normalize_override(f"{group}={option}", GROUPS, chosen) == f"+{group}={option}"
        assert compose_plain([f"{group}={option}"]) == compose_plain([f"+{group}={option}"])
