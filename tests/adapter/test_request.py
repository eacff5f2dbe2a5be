"""Responses request -> chat body: field mapping, precedence, token capture, n == 1."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from gym_rollouts.adapter.request import RequestConversionError, build_chat_body, responses_tools_to_chat
from gym_rollouts.config.schema import ModelConfig

BASE = ModelConfig()
CAPTURE = dataclasses.replace(BASE, return_token_id_information=True)
MSG = {"input": "hi"}


def body(params=None, cfg=BASE, model="served"):
    return build_chat_body({**MSG, **(params or {})}, cfg, model)


def without_messages(b):
    return {k: v for k, v in b.items() if k != "messages"}


MAPPING = [
    ("max_output_tokens -> max_tokens", {"max_output_tokens": 64}, {"max_tokens": 64}),
    ("reasoning.effort -> reasoning_effort", {"reasoning": {"effort": "low"}}, {"reasoning_effort": "low"}),
    ("reasoning without effort adds nothing", {"reasoning": {"summary": "auto"}}, {}),
    ("sampling fields pass through", {"temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["x"]},
     {"temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["x"]}),
    ("null fields are dropped", {"temperature": None, "top_p": None}, {}),
    ("null top_logprobs is dropped", {"top_logprobs": None}, {}),
    ("top_logprobs N asks for logprobs", {"top_logprobs": 2}, {"logprobs": True, "top_logprobs": 2}),
    ("request model is replaced by config", {"model": "gpt-x"}, {}),
    ("ignored Responses fields", {"store": False, "truncation": "auto", "user": "u", "include": [], "background": False}, {}),
    ("text.format json_schema -> response_format",
     {"text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": True}}}),
    ("text.format text adds nothing", {"text": {"format": {"type": "text"}}}, {}),
    ("tools: flat Responses tool -> nested chat tool, strict dropped, tool_choice mapped",
     {"tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}],
      "tool_choice": {"type": "function", "name": "f"}},
     {"tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
      "tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ("tool_choice string passes through", {"tools": [{"type": "function", "name": "f"}], "tool_choice": "required"},
     {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
    ("tool_choice without tools is dropped", {"tool_choice": "auto"}, {}),
]


@pytest.mark.parametrize("params,expected", [c[1:] for c in MAPPING], ids=[c[0] for c in MAPPING])
def test_field_mapping(params, expected):
    assert without_messages(body(params)) == {"model": "served", **expected}


def meta(**kw):
    return {"metadata": {k: orjson.dumps(v).decode() for k, v in kw.items()}}


PRECEDENCE = [
    ("config extra_body fills in", {}, dict(extra_body={"top_k": 5}), {"top_k": 5}),
    ("extra_body sits under the request", {"temperature": 0.7}, dict(extra_body={"temperature": 0.1}), {"temperature": 0.7}),
    ("metadata.extra_body over config extra_body", meta(extra_body={"top_k": 7}), dict(extra_body={"top_k": 5, "min_p": 0.1}),
     {"top_k": 7, "min_p": 0.1}),
    ("metadata.extra_body is still under the request", {"temperature": 0.7, **meta(extra_body={"temperature": 0.2})}, {},
     {"temperature": 0.7}),
    ("metadata.chat_template_kwargs over config chat_template_kwargs",
     meta(chat_template_kwargs={"enable_thinking": False}), dict(chat_template_kwargs={"enable_thinking": True, "x": 1}),
     {"chat_template_kwargs": {"enable_thinking": False, "x": 1}}),
    ("chat_template_kwargs: config extra_body < config < metadata.extra_body < metadata",
     meta(extra_body={"chat_template_kwargs": {"c": 3, "d": 3}}, chat_template_kwargs={"d": 4}),
     dict(extra_body={"chat_template_kwargs": {"a": 1, "b": 1}}, chat_template_kwargs={"b": 2, "c": 2}),
     {"chat_template_kwargs": {"a": 1, "b": 2, "c": 3, "d": 4}}),
    ("sampling_overrides over the request and extra_body", {"temperature": 0.7, **meta(extra_body={"top_p": 0.5})},
     dict(sampling_overrides={"temperature": 1.0, "top_p": 1.0}), {"temperature": 1.0, "top_p": 1.0}),
    ("temperature/top_p shorthands act like sampling_overrides", {"temperature": 0.7},
     dict(temperature=0.3, top_p=0.8), {"temperature": 0.3, "top_p": 0.8}),
    ("model always from config", meta(extra_body={"model": "other"}), dict(sampling_overrides={"model": "other2"}), {}),
    ("structured outputs via config extra_body", {}, dict(extra_body={"structured_outputs": {"regex": "a+"}}),
     {"structured_outputs": {"regex": "a+"}}),
    ("metadata as objects (not JSON strings) are accepted too", {"metadata": {"extra_body": {"top_k": 9}}}, {}, {"top_k": 9}),
]


@pytest.mark.parametrize("params,cfg_kw,expected", [c[1:] for c in PRECEDENCE], ids=[c[0] for c in PRECEDENCE])
def test_precedence(params, cfg_kw, expected):
    cfg = dataclasses.replace(BASE, **cfg_kw)
    assert without_messages(body(params, cfg)) == {"model": "served", **expected}


CAPTURE_FLAGS = {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}


@pytest.mark.parametrize("params,cfg_kw", [
    ({}, {}),
    ({"top_logprobs": 5}, {}),
    ({"top_logprobs": None}, {}),
    (meta(extra_body={"logprobs": False, "top_logprobs": None}), {}),
    ({}, dict(sampling_overrides={"top_logprobs": 3, "return_token_ids": False})),
], ids=["plain", "request top_logprobs", "null top_logprobs", "extra_body tries to switch off", "overrides try to switch off"])
def test_token_capture_flags_always_win(params, cfg_kw):
    b = body(params, dataclasses.replace(CAPTURE, **cfg_kw))
    assert {k: b[k] for k in CAPTURE_FLAGS} == CAPTURE_FLAGS


@pytest.mark.parametrize("cfg_kw", [dict(extra_body={"n": 2}), dict(sampling_overrides={"n": 3})])
def test_token_capture_requires_single_choice(cfg_kw):
    with pytest.raises(RequestConversionError, match="n == 1"):
        body({}, dataclasses.replace(CAPTURE, **cfg_kw))


def test_n_above_one_allowed_without_capture():
    assert body({}, dataclasses.replace(BASE, extra_body={"n": 2}))["n"] == 2


ERRORS = [
    ("unknown Responses field", {"frobnicate": 1}, "frobnicate"),
    ("n is not a Responses field", {"n": 2}, "n"),
    ("stream=true", {"stream": True}, "stream"),
    ("metadata.extra_body not JSON", {"metadata": {"extra_body": "{oops"}}, "metadata.extra_body is not valid JSON"),
    ("metadata.chat_template_kwargs not an object", {"metadata": {"chat_template_kwargs": "[1]"}},
     "metadata.chat_template_kwargs must hold a JSON object"),
    ("non-function tool", {"tools": [{"type": "web_search"}]}, "only function tools"),
    ("tool without name", {"tools": [{"type": "function"}]}, "no name"),
    ("unsupported text.format", {"text": {"format": {"type": "grammar"}}}, "grammar"),
]


@pytest.mark.parametrize("params,fragment", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors(params, fragment):
    with pytest.raises(RequestConversionError) as info:
        body(params)
    assert fragment in str(info.value)


def test_chat_tools_pass_through_nested_form():
    nested = [{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}]
    assert responses_tools_to_chat(nested) == [{"type": "function", "function": {"name": "f", "parameters": {}}}]
