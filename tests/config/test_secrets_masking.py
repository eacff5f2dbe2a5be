"""``mask_secrets``: registered values and Authorization / Bearer patterns become ``****``; what is
not a secret (placeholders, short values, our own ``<placeholder>`` help texts) stays readable.
The registry is process-wide and only grows, so every test registers values of its own."""

from __future__ import annotations

import io
import logging
import uuid

import pytest

from gym_rollouts.config.redact import MASK
from gym_rollouts.config.secrets import (SecretMaskingFilter, known_secrets, mask_in, mask_secrets,
                                         register_config_secrets, register_secret, secret_values)


def _fresh(prefix: str = "sk-") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer abc.def-1", "Authorization: Bearer ****"),
    ("headers {'Authorization': 'Bearer t0k'}", "headers {'Authorization': 'Bearer ****'}"),
    ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "Basic ****"}'),
    ('{\\"Authorization\\": \\"Bearer nested\\"}', '{\\"Authorization\\": \\"Bearer ****\\"}'),
    ("authorization=rawvalue; next", "authorization=****; next"),
    ("Proxy-Authorization: Bearer p", "Proxy-Authorization: Bearer ****"),
    ("sent with bearer xyz123 to the server", "sent with bearer **** to the server"),
    ("AUTHORIZATION: token ghp_1", "AUTHORIZATION: token ****"),
    # not credentials: our help texts, references, a header name alone, already masked text
    ("only 'Authorization: Bearer <policy_api_key>'", "only 'Authorization: Bearer <policy_api_key>'"),
    ("Bearer ${oc.env:MY_KEY}", "Bearer ${oc.env:MY_KEY}"),
    ("the Authorization header is missing", "the Authorization header is missing"),
    ("Authorization: Bearer ****", "Authorization: Bearer ****"),
    ("max_output_tokens: 4096", "max_output_tokens: 4096"),
])
def test_authorization_and_bearer_patterns(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


def test_registered_values_are_masked_everywhere_including_json_escaped() -> None:
    plain, quoted = _fresh(), _fresh('k"\\')
    register_secret(plain)
    register_secret(quoted)
    assert mask_secrets(f"bad key {plain}, again {plain}") == "bad key ****, again ****"
    escaped = quoted.replace("\\", "\\\\").replace('"', '\\"')
    assert mask_secrets(f'{{"message": "key {escaped}"}}') == '{"message": "key ****"}'
    assert mask_secrets(f"raw {quoted}") == "raw ****"


def test_a_longer_key_that_contains_a_shorter_one_is_masked_whole() -> None:
    short = _fresh()
    register_secret(short)
    register_secret(short + "-extended")
    assert mask_secrets(f"x {short}-extended y") == "x **** y"


@pytest.mark.parametrize("value", [None, "", "EMPTY", "???", "abc", True])
def test_placeholders_and_short_values_are_not_registered(value) -> None:
    before = known_secrets()
    register_secret(value)
    assert known_secrets() == before


def test_numbers_are_registered_as_their_text() -> None:
    number = int(uuid.uuid4().int % 10**12) + 10**12
    register_secret(number)
    assert mask_secrets(f"key {number}") == "key ****"


def test_secret_values_of_a_composed_config() -> None:
    cfg = {"policy_api_key": "a1", "limit": 3, "model": {"api_key": "a2", "extra_body": {
        "headers": {"Authorization": "Bearer a3", "X-Team": "rl"}, "max_tokens": 9}},
        "servers": [{"hf_token": "a4"}, {"eos_token": "</s>"}]}
    assert sorted(secret_values(cfg)) == ["Bearer a3", "a1", "a2", "a4"]
    composed = {"policy_api_key": _fresh(), "model": {"api_key": _fresh()}, "wandb_api_key": "EMPTY"}
    register_config_secrets(composed)
    assert mask_secrets(f"{composed['policy_api_key']} {composed['model']['api_key']} EMPTY") == "**** **** EMPTY"


def test_mask_in_copies_containers_with_every_string_masked() -> None:
    key = _fresh()
    register_secret(key)
    row = {"message": f"HTTP 500: key {key}", "attempt": 2, "nested": [f"Bearer {key}", None]}
    assert mask_in(row) == {"message": "HTTP 500: key ****", "attempt": 2, "nested": ["Bearer ****", None]}
    assert row["message"].endswith(key)  # the input is untouched


def test_logging_filter_masks_message_arguments_and_traceback() -> None:
    key = _fresh()
    register_secret(key)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretMaskingFilter())
    logger = logging.getLogger(f"test_secrets_masking.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("server said: %s", f"rejected {key}")
    try:
        raise RuntimeError(f"Authorization: Bearer {key}")
    except RuntimeError:
        logger.exception("call failed")
    text = stream.getvalue()
    assert key not in text
    assert "server said: rejected ****" in text and "RuntimeError: Authorization: Bearer ****" in text
    assert MASK in text
