"""Responses request -> chat body: field mapping, precedence, token capture, n == 1."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from gym_rollouts.adapter.request import (
    IGNORED,
    KNOWN_FIELDS,
    MAPPED,
    NOOP_ONLY,
    PASSTHROUGH,
    RequestConversionError,
    build_chat_body,
    request_problems,
    responses_tools_to_chat,
)
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
    ("ignored Responses fields", {"store": False, "user": "u", "include": ["reasoning.encrypted_content"],
                                  "service_tier": "auto", "max_tool_calls": 3, "prompt_cache_key": "k",
                                  "prompt_cache_retention": "24h", "safety_identifier": "s",
                                  "stream_options": {"include_usage": True}}, {}),
    ("no-op values are accepted", {"background": False, "stream": False, "truncation": "disabled"}, {}),
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
    ("tool_choice auto without tools is dropped (vLLM refuses it)", {"tool_choice": "auto"}, {}),
    ("tool_choice none without tools is dropped", {"tool_choice": "none"}, {}),
    ("tool_choice none with tools is sent", {"tools": [{"type": "function", "name": "f"}], "tool_choice": "none"},
     {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}),
    ("named tool_choice in chat form is accepted",
     {"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "function": {"name": "f"}}},
     {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ("parallel_tool_calls is sent with tools",
     {"tools": [{"type": "function", "name": "f"}], "parallel_tool_calls": False},
     {"tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": False}),
    ("parallel_tool_calls is not sent without tools", {"parallel_tool_calls": True}, {}),
    ("parallel_tool_calls is not sent with an empty tools list (vLLM refuses tools: [])",
     {"tools": [], "parallel_tool_calls": False, "tool_choice": "auto"}, {}),
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


# -- every Responses field is handled: mapped, ignored on purpose, or accepted at its no-op value --

# NeMo Gym 0.4.0's NeMoGymResponseCreateParamsNonStreaming and the OpenAI SDK's ResponseCreateParams
# (2.7 as pinned by NeMo Gym, and 3.x): every field is one of ours.
NEMO_GYM_FIELDS = {"background", "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata",
                   "model", "parallel_tool_calls", "previous_response_id", "prompt", "reasoning", "service_tier",
                   "store", "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation",
                   "user", "stream"}
OPENAI_SDK_FIELDS = {"conversation", "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "stream_options",
                     "access_programs", "background_options", "context_management", "image", "moderation",
                     "prompt_cache_options"}


def test_every_known_responses_field_is_classified():
    assert NEMO_GYM_FIELDS | OPENAI_SDK_FIELDS <= KNOWN_FIELDS
    groups = [MAPPED, IGNORED, set(PASSTHROUGH), set(NOOP_ONLY)]
    assert sum(len(g) for g in groups) == len(KNOWN_FIELDS)  # each field in exactly one group


def test_a_full_nemo_gym_dump_with_nulls_builds():
    dump = {k: None for k in NEMO_GYM_FIELDS | OPENAI_SDK_FIELDS}
    dump.update(input="hi", tools=[], parallel_tool_calls=True, tool_choice="auto")
    assert request_problems(dump) == []
    assert without_messages(build_chat_body(dump, BASE, "served")) == {"model": "served"}


NOOP_REFUSED = [
    ("previous_response_id", "resp_1", "stateless, there is no stored response to continue: put the whole "
                                      "conversation in input and drop previous_response_id"),
    ("conversation", "conv_1", "keeps no server-side conversations"),
    ("conversation", {"id": "conv_1"}, "keeps no server-side conversations"),
    ("prompt", {"id": "pmpt_1", "variables": {}}, "stored prompt templates"),
    ("stream", True, "collection is not streamed"),
    ("background", True, "no background responses"),
    ("background_options", {"completion_window": "2h"}, "no background responses"),
    ("truncation", "auto", "never drops conversation items"),
    ("context_management", [{"type": "compaction"}], "no server-side context compaction"),
    ("moderation", {"model": "m"}, "runs no moderation"),
    ("image", {"size": "auto"}, "request-level image options"),
    ("access_programs", {"x": 1}, "no vLLM equivalent"),
]


@pytest.mark.parametrize("field,value,reason", NOOP_REFUSED, ids=[f"{c[0]}={c[1]!r}" for c in NOOP_REFUSED])
def test_fields_accepted_only_at_their_noop_value(field, value, reason):
    message = f"responses_create_params.{field}={orjson.dumps(value).decode()} is not supported: "
    assert [p for p in request_problems({**MSG, field: value}) if p.startswith(message)]
    assert reason in request_problems({**MSG, field: value})[0]
    with pytest.raises(RequestConversionError, match=message.replace("[", r"\[").replace("{", r"\{")):
        body({field: value})
    assert request_problems({**MSG, field: None}) == []


def test_noop_values_are_exact():
    assert request_problems({**MSG, "background": 0})  # 0 is not false
    assert request_problems({**MSG, "truncation": "disabled", "background": False, "stream": False}) == []


TOOL_CHOICE_ERRORS = [
    ("required without tools", {"tool_choice": "required"},
     "tool_choice='required' asks for a tool call, but the request has no tools: add tools (or drop tool_choice)"),
    ("required with an empty tools list", {"tools": [], "tool_choice": "required"}, "the request has no tools"),
    ("named function without tools", {"tool_choice": {"type": "function", "name": "f"}}, "the request has no tools"),
    ("named function not among the tools", {"tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "g"}],
                                            "tool_choice": {"type": "function", "name": "h"}},
     "names function 'h', which is not among the tools (f, g)"),
    ("allowed_tools", {"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "allowed_tools", "mode": "auto"}},
     "tool_choice 'allowed_tools' is not supported"),
    ("hosted tool", {"tool_choice": {"type": "web_search_preview"}}, "tool_choice 'web_search_preview' is not supported"),
    ("unknown string", {"tools": [{"type": "function", "name": "f"}], "tool_choice": "any"}, "tool_choice 'any' is not supported"),
]


@pytest.mark.parametrize("params,fragment", [c[1:] for c in TOOL_CHOICE_ERRORS], ids=[c[0] for c in TOOL_CHOICE_ERRORS])
def test_tool_choice_errors(params, fragment):
    problems = request_problems({**MSG, **params})
    assert len(problems) == 1 and fragment in problems[0]
    with pytest.raises(RequestConversionError) as info:
        body(params)
    assert str(info.value) == problems[0]


MORE_ERRORS = [
    ("text.verbosity", {"text": {"verbosity": "low"}}, "text.verbosity='low' is not supported"),
    ("text not an object", {"text": "json"}, "text must be an object"),
    ("reasoning not an object", {"reasoning": "high"}, "reasoning must be an object"),
    ("metadata not an object", {"metadata": "x"}, "metadata must be an object"),
    ("metadata.extra_body.chat_template_kwargs not an object",
     {"metadata": {"extra_body": '{"chat_template_kwargs": 1}'}}, "metadata.extra_body.chat_template_kwargs must be an object"),
    ("tools not a list", {"tools": {"name": "f"}}, "tools must be a list"),
]


@pytest.mark.parametrize("params,fragment", [c[1:] for c in MORE_ERRORS + ERRORS], ids=[c[0] for c in MORE_ERRORS + ERRORS])
def test_request_problems_find_what_the_builder_raises(params, fragment):
    problems = request_problems({**MSG, **params})
    assert problems and fragment in "; ".join(problems)
    with pytest.raises(RequestConversionError) as info:
        body(params)
    assert str(info.value) == "; ".join(problems)


def test_request_problems_lists_every_problem_at_once():
    params = {"input": [{"type": "item_reference", "id": "x"}], "previous_response_id": "resp_1", "frobnicate": 1,
              "tool_choice": "required", "metadata": {"audio_path": "a.wav"}}
    problems = request_problems(params)
    assert [p.split(" ")[0] for p in problems] == [
        "responses_create_params", "responses_create_params.previous_response_id=\"resp_1\"", "tool_choice='required'",
        "input[0]", "metadata.audio_path"]
    assert "frobnicate" in problems[0]


def test_request_problems_on_a_non_object():
    assert request_problems(["x"]) == ["responses_create_params must be an object, got list"]


@pytest.mark.parametrize("params", [c[1] for c in MAPPING] + [c[1] for c in PRECEDENCE], ids=[c[0] for c in MAPPING + PRECEDENCE])
def test_buildable_requests_have_no_problems(params):
    assert request_problems({**MSG, **params}) == []
