"""Completions mode: prompt building, refusals, body shaping and token-capture fields."""

from __future__ import annotations

import dataclasses

import pytest

from gym_rollouts.adapter.completions import build_completions_body
from gym_rollouts.adapter.messages import RequestConversionError
from gym_rollouts.adapter.request import request_problems
from gym_rollouts.config.schema import ModelConfig

BASE = ModelConfig(use_completions_api=True)
CAPTURE = dataclasses.replace(BASE, return_token_id_information=True)

PROMPTS = [
    ("string input", {"input": "2+2="}, "2+2="),
    ("[user]", {"input": [{"role": "user", "content": "q"}]}, "q"),
    ("[system, user] joined by a blank line", {"input": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]},
     "S\n\nq"),
    ("instructions count as the system message", {"input": "q", "instructions": "I"}, "I\n\nq"),
    ("whitespace kept", {"input": " q \n"}, " q \n"),
]


@pytest.mark.parametrize("params,prompt", [c[1:] for c in PROMPTS], ids=[c[0] for c in PROMPTS])
def test_prompt(params, prompt):
    assert build_completions_body(params, BASE, "m")["prompt"] == prompt


REFUSED = [
    ("tools", {"input": "q", "tools": [{"type": "function", "name": "f"}]}, "does not support tools"),
    ("multi-turn", {"input": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                              {"role": "user", "content": "c"}]}, "['user', 'assistant', 'user']"),
    ("tool output", {"input": [{"role": "user", "content": "a"}, {"type": "function_call_output", "call_id": "c",
                                                                   "output": "x"}]}, "chat API"),
    ("system only", {"input": [{"role": "system", "content": "a"}]}, "[user] or [system, user]"),
    ("an image", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "q"},
                                                         {"type": "input_image", "image_url": "data:image/png;base64,AA"}]}]},
     "cannot carry images or audio (input_image); use the chat API (use_completions_api=false)"),
    ("input_audio", {"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]}]},
     "cannot carry images or audio (input_audio)"),
    ("the metadata audio side channel", {"input": "q", "metadata": {"audio_data": "data:audio/wav;base64,AA"}},
     "cannot carry images or audio (metadata audio)"),
]


@pytest.mark.parametrize("params,fragment", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused(params, fragment):
    with pytest.raises(RequestConversionError) as info:
        build_completions_body(params, BASE, "m")
    assert fragment in str(info.value)


@pytest.mark.parametrize("params,fragment", [c[1:] for c in REFUSED[:1] + REFUSED[4:]], ids=[c[0] for c in REFUSED[:1] + REFUSED[4:]])
def test_the_row_scan_sees_completions_refusals(params, fragment):
    """Tools, images and audio are refused up front by request_problems with a completions config."""
    assert any(fragment in p for p in request_problems(params, BASE))
    assert not any("completions mode" in p for p in request_problems(params, ModelConfig()))


def test_text_parts_join_with_a_newline_in_the_prompt():
    params = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]}]}
    assert build_completions_body(params, BASE, "m")["prompt"] == "a\nb"


def test_body_fields_and_precedence():
    cfg = dataclasses.replace(BASE, extra_body={"top_k": 4, "temperature": 0.1}, chat_template_kwargs={"x": 1},
                              sampling_overrides={"top_p": 0.5})
    body = build_completions_body({"input": "q", "max_output_tokens": 8, "temperature": 0.9,
                                   "reasoning": {"effort": "high"}, "parallel_tool_calls": False}, cfg, "m")
    assert body == {"model": "m", "prompt": "q", "max_tokens": 8, "temperature": 0.9, "top_k": 4, "top_p": 0.5}


def test_token_capture_fields():
    body = build_completions_body({"input": "q", "top_logprobs": 3}, CAPTURE, "m")
    assert {k: body[k] for k in ("logprobs", "return_tokens_as_token_ids", "return_token_ids")} == \
        {"logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}
    assert "top_logprobs" not in body


def test_top_logprobs_become_completions_logprobs_without_capture():
    assert build_completions_body({"input": "q", "top_logprobs": 3}, BASE, "m")["logprobs"] == 3


def test_capture_requires_single_choice():
    with pytest.raises(RequestConversionError, match="n == 1"):
        build_completions_body({"input": "q"}, dataclasses.replace(CAPTURE, extra_body={"n": 2}), "m")
