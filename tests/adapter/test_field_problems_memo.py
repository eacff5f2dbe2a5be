"""adapter/request.py ``field_problems``: memoized by the fields' JSON, with the same answers as
without the memo, and never for what that JSON would misstate (NaN, infinities, non-JSON values)."""

from __future__ import annotations

import math

import orjson
import pytest

from gym_rollouts.adapter import request
from gym_rollouts.adapter.request import FIELDS_MEMO_ENTRIES, build_chat_body, field_problems, request_problems
from gym_rollouts.config.schema import ModelConfig

TOOL = {"type": "function", "name": "get_weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}

CASES = [
    {"input": "hi", "tools": [TOOL], "max_output_tokens": 64},
    {"input": "other input, same fields", "tools": [TOOL], "max_output_tokens": 64},
    {"input": "hi", "temperature": 3.5},  # out of range
    {"input": "hi", "temperature": "hot", "tools": "x"},  # two problems
    {"input": "hi", "bogus_field": 1},
    {"input": "hi", "stream": True},
    {"input": "hi", "tool_choice": "required"},
    {"input": "hi", "text": {"format": {"type": "yaml"}}},
    {"input": "hi", "metadata": {"extra_body": "{not json"}},
    {"input": "hi", "temperature": 1},
    {"input": "hi", "temperature": True},  # a boolean is not a number (JSON tells them apart)
]


@pytest.fixture(autouse=True)
def empty_memo():
    request._FIELDS_MEMO.clear()
    yield
    request._FIELDS_MEMO.clear()


@pytest.mark.parametrize("params", CASES)
def test_the_memo_answers_as_the_checks_do(params) -> None:
    unmemoized = request._field_problems({k: v for k, v in params.items() if k != "input"})
    first, second = field_problems(params), field_problems(params)
    assert first == second == unmemoized
    first.append("caller's own list")
    assert field_problems(params) == unmemoized  # each caller gets its own list


def test_one_entry_per_distinct_fields_and_bounded() -> None:
    field_problems(CASES[0])
    field_problems(CASES[1])  # same fields, other input
    assert len(request._FIELDS_MEMO) == 1
    for i in range(FIELDS_MEMO_ENTRIES + 10):
        field_problems({"input": "hi", "seed": i})
    assert 0 < len(request._FIELDS_MEMO) <= FIELDS_MEMO_ENTRIES


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_even_after_a_valid_null(bad) -> None:
    """orjson writes NaN and infinities as null: such fields are judged as they are, not as the
    null (an unset temperature) that was fine before."""
    assert field_problems({"input": "hi", "temperature": None}) == []
    problems = field_problems({"input": "hi", "temperature": bad})
    assert len(problems) == 1 and "temperature" in problems[0]
    assert request._FIELDS_MEMO == {}  # nothing with a null is memoized


def test_values_that_are_not_json_are_judged_as_they_are() -> None:
    class Name(str):
        pass

    assert field_problems({"input": "hi", "stop": {"a", "b"}}) == request._field_problems({"stop": {"a", "b"}})
    assert field_problems({"input": "hi", "stop": {"a", "b"}})  # a set: refused
    assert field_problems({"input": "hi", "tool_choice": Name("auto")}) == []
    assert request._FIELDS_MEMO == {}


def test_a_tuple_is_the_json_array_it_is_sent_as() -> None:
    """The memo judges the JSON form, so a tuple must get a list's answer, memo or not, and a
    tuple of tools must build the same body as a list."""
    as_list = {"input": "hi", "tools": [TOOL], "stop": ["x"]}
    as_tuple = {"input": "hi", "tools": (TOOL,), "stop": ("x",)}
    assert field_problems(as_tuple) == field_problems(as_list) == []
    request._FIELDS_MEMO.clear()
    assert request._field_problems({k: v for k, v in as_tuple.items() if k != "input"}) == []
    assert request_problems(as_tuple) == request_problems(as_list) == []
    cfg = ModelConfig()
    sent = [orjson.dumps(build_chat_body(params, cfg, "m")) for params in (as_tuple, as_list)]
    assert sent[0] == sent[1]


@pytest.mark.parametrize("bad", [[math.nan], [1, math.inf], {"7": -math.inf}])
def test_nan_inside_a_list_or_an_object_is_not_memoized(bad) -> None:
    field_problems({"input": "hi", "logit_bias": bad})
    assert request._FIELDS_MEMO == {}


def test_the_string_null_in_a_tool_schema_is_memoized() -> None:
    """A schema's optional parameter (``"type": "null"``) or a description saying "null" is a
    string, not a null value: those fields are memoized like any other."""
    tool = {"type": "function", "name": "f", "description": "returns null on failure",
            "parameters": {"type": "object", "properties": {
                "city": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}
    params = {"input": "hi", "tools": [tool]}
    assert field_problems(params) == request._field_problems({"tools": [tool]}) == []
    assert len(request._FIELDS_MEMO) == 1
