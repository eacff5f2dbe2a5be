"""Secret masking: by whole key name or suffix, never by substring."""

from __future__ import annotations

import pytest

from gym_rollouts.config.redact import MASK, is_secret_key, redact


@pytest.mark.parametrize("key", ["api_key", "policy_api_key", "openai_api_key", "WANDB_API_KEY", "hf_token",
                                 "Authorization", "authorization", "Proxy-Authorization", "X-Api-Key",
                                 "password", "db_password"])
def test_secret_keys(key: str):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_output_tokens", "max_tokens", "return_token_id_information",
                                 "total_tokens", "token", "tokens", "hf_token_path_hint", "api_keys_file",
                                 "author", "key", "return_token_ids", "top_logprobs", "model"])
def test_not_secret_keys(key: str):
    assert not is_secret_key(key)


def test_redact_nested_and_lists():
    cfg = {
        "policy_api_key": "sk-1", "limit": 3,
        "model": {"api_key": "sk-2", "extra_body": {"headers": {"Authorization": "Bearer t", "X-Team": "rl"},
                                                    "max_tokens": 9}},
        "servers": [{"url": "http://a/v1", "hf_token": "hf_x"}, {"url": "http://b/v1", "hf_token": None}],
    }
    out = redact(cfg)
    assert out == {
        "policy_api_key": MASK, "limit": 3,
        "model": {"api_key": MASK, "extra_body": {"headers": {"Authorization": MASK, "X-Team": "rl"},
                                                   "max_tokens": 9}},
        "servers": [{"url": "http://a/v1", "hf_token": MASK}, {"url": "http://b/v1", "hf_token": None}],
    }
    assert cfg["model"]["api_key"] == "sk-2"  # a copy: the input is untouched


@pytest.mark.parametrize("key", ["wandb_api_key", "mlflow_tracking_token", "github_token", "access_token",
                                 "judge_api_key", "aws_secret_access_key", "client_secret", "secret",
                                 "private_key", "ssh_private_key", "HF_TOKEN"])
def test_env_yaml_secrets(key: str):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["eos_token", "bos_token", "pad_token", "add_bos_token", "max_new_tokens",
                                 "secret_santa_count", "key_path"])
def test_tokenizer_tokens_and_lookalikes_are_not_secrets(key: str):
    assert not is_secret_key(key)
