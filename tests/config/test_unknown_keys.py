"""Unknown keys and group options are errors with a did-you-mean hint, never silently ignored."""

from __future__ import annotations

import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.errors import ConfigError


@pytest.mark.parametrize(("override", "named", "hint"), [
    ("num_repets=3", "num_repets", "num_repeats"),
    ("+num_samples_in_paralel=8", "num_samples_in_paralel", "num_samples_in_parallel"),
    ("++policy_base_urls=http://a/v1", "policy_base_urls", "policy_base_url"),
    ("model.retrun_token_id_information=true", "model.retrun_token_id_information", "model.return_token_id_information"),
    ("+transport.conect_timeout_s=3", "transport.conect_timeout_s", "transport.connect_timeout_s"),
    ("servers.max_model_length=10", "servers.max_model_length", "servers.max_model_len"),
    ("agent.max_step=3", "agent.max_step", "agent.max_steps"),
])
def test_unknown_key_names_it_and_suggests(override: str, named: str, hint: str):
    with pytest.raises(ConfigError) as info:
        build_collect_config(compose_plain([override]))
    message = str(info.value)
    assert f"'{named}'" in message and f"Did you mean '{hint}'?" in message
    assert "\n" not in message


def test_unknown_key_without_a_close_match_has_no_hint():
    with pytest.raises(ConfigError) as info:
        build_collect_config(compose_plain(["+zzzz=1"]))
    assert "'zzzz'" in str(info.value) and "Did you mean" not in str(info.value)


@pytest.mark.parametrize(("override", "hint"), [
    ("model=vllm_for_trainig", "model=vllm_for_training"),
    ("resource=weathr", "resource=weather"),
    ("+servers=embeded", "servers=embedded"),
])
def test_unknown_group_option_suggests(override: str, hint: str):
    with pytest.raises(ConfigError, match=f"Did you mean '{hint}'"):
        compose_plain([override])


@pytest.mark.parametrize(("override", "message"), [
    ("limit=abc", "limit must be an integer"),
    ("num_repeats=0", "num_repeats must be >= 1"),
    ("num_samples_in_parallel=0", "num_samples_in_parallel must be >= 1"),
    ("agent.max_steps=0", "agent.max_steps must be >= 1"),
    ("progress=loud", "progress must be one of"),
    ("policy_base_url=localhost:8000", "is not an http(s) URL"),
    ("model.return_token_id_information=maybe", "must be true or false"),
])
def test_bad_values_are_config_errors(override: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_collect_config(compose_plain([override]))


def test_all_unknown_keys_at_every_level_in_one_error():
    overrides = ["num_repets=3", "+zzzz=1", "model.retrun_token_id_information=true",
                 "+transport.conect_timeout_s=3", "+transport.retry_budget.connect=2", "agent.max_step=3"]
    with pytest.raises(ConfigError) as info:
        build_collect_config(compose_plain(overrides))
    message = str(info.value)
    assert "\n" not in message and message.startswith("5 unknown config keys: ")
    for named, hint in (("num_repets", "num_repeats"), ("model.retrun_token_id_information",
                                                        "model.return_token_id_information"),
                        ("transport.conect_timeout_s", "transport.connect_timeout_s"),
                        ("agent.max_step", "agent.max_steps")):
        assert f"'{named}'" in message and f"Did you mean '{hint}'?" in message
    assert "'zzzz'" in message


def test_nemo_gym_vllm_field_under_model_gets_a_pointer():
    with pytest.raises(ConfigError, match="NeMo Gym vllm_model field we do not honour.*nemo_gym_config.md"):
        build_collect_config(compose_plain(["+model.is_responses_native=false"]))
