"""Context length: vLLM's texts in both body shapes, the max_tokens clamp, context-cut finishes."""

from __future__ import annotations

import orjson
import pytest

from gym_rollouts.adapter.context import clamp_max_tokens, is_context_length_error, ran_out_of_context
from gym_rollouts.errors import ServerStatusError
from gym_rollouts.transport.client import error_message

# Exact texts of vLLM 0.32 (see /work/shared/vllm_wire.md) and of older versions.
TOO_LONG = ("This model's maximum context length is 2048 tokens. However, your prompt contains at least 2049 "
            "input tokens, which exceeds this limit even without any output tokens. Please reduce the length of "
            "the input prompt. (parameter=input_tokens, value=2049)")
AT_LIMIT = "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
ABOVE = ("max_tokens=4000 cannot be greater than max_model_len=2048. Please request fewer output tokens. "
         "(parameter=max_tokens, value=4000)")
OLD_TOO_LONG = ("This model's maximum context length is 32768 tokens. However, you requested 32818 tokens in the "
                "messages, Please reduce the length of the messages. None")
ENGINE = ("The decoder prompt (length 2049) is longer than the maximum model length of 2048. Make sure that "
          "`max_model_len` is no smaller than the number of text tokens.")


def message_of(status, body):
    """The message as the adapter gets it: decoded once by the transport into the error."""
    return ServerStatusError(status, body, message=error_message(body)).server_message


def nested(message):
    return orjson.dumps({"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}).decode()


def flat(message):
    return orjson.dumps({"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}).decode()


@pytest.mark.parametrize("shape", [nested, flat], ids=["error-object", "flat"])
@pytest.mark.parametrize("text", [TOO_LONG, AT_LIMIT, ABOVE, OLD_TOO_LONG, ENGINE],
                         ids=["prompt-too-long", "exactly-at-limit", "max_tokens-above", "old-too-long", "engine-check"])
def test_recognised(shape, text):
    assert is_context_length_error(400, message_of(400, shape(text)))


NOT_CONTEXT = [
    ("another 400", 400, nested("'\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set")),
    ("a validation error mentioning max_tokens", 400, nested("max_tokens: Input should be a valid integer")),
    ("same text on a 500", 500, nested(TOO_LONG)),
    ("not JSON", 400, "Bad Request"),
]


@pytest.mark.parametrize("status,body", [c[1:] for c in NOT_CONTEXT], ids=[c[0] for c in NOT_CONTEXT])
def test_not_recognised(status, body):
    assert not is_context_length_error(status, message_of(status, body))


CLAMP = [
    ("unknown context: untouched", 500, 100, None, 500),
    ("unknown prompt: capped at max_model_len", 5000, None, 2048, 2048),
    ("unknown prompt, no request: untouched", None, None, 2048, None),
    ("fits", 100, 1000, 2048, 100),
    ("clamped to the room left", 2000, 1000, 2048, 1048),
    ("no request: the room left", None, 1000, 2048, 1048),
    ("exactly full: no room", 10, 2048, 2048, 0),
    ("over: no room", 10, 3000, 2048, 0),
]


@pytest.mark.parametrize("requested,prompt,mml,expected", [c[1:] for c in CLAMP], ids=[c[0] for c in CLAMP])
def test_clamp(requested, prompt, mml, expected):
    assert clamp_max_tokens(requested, prompt, mml) == expected


RAN_OUT = [
    ("stop finish", "stop", 2000, 48, None, 2048, False),
    ("length, own budget used up", "length", 100, 50, 50, 2048, False),
    ("length, context full before budget", "length", 2000, 48, 100, 2048, True),
    ("length, context full, no budget given", "length", 2000, 48, None, 2048, True),
    ("length, context not full", "length", 100, 48, None, 2048, False),
    ("unknown context", "length", 2000, 48, None, None, False),
]


@pytest.mark.parametrize("finish,prompt,completion,wanted,mml,expected", [c[1:] for c in RAN_OUT], ids=[c[0] for c in RAN_OUT])
def test_ran_out_of_context(finish, prompt, completion, wanted, mml, expected):
    assert ran_out_of_context(finish, prompt, completion, wanted, mml) is expected
