"""Unit tests: arithmetic, the scripted model and the output parsers (all pure)."""

import itertools
import json

import pytest

from gym_rollouts.embedded.arith import evaluate, find_expression, format_number, solve
from gym_rollouts.embedded.parsers import parse_tool_calls, split_reasoning
from gym_rollouts.embedded.policy import ScriptedModel, build_arguments, choose_tool
from gym_rollouts.embedded.template import render_assistant_body

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
CALC = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}
SEARCH = {"type": "function", "function": {"name": "search_docs", "description": "Search the documentation",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}

model = ScriptedModel()


def user(text):
    return [{"role": "user", "content": text}]


# -- arithmetic ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expr", [
    ("What is (12+3)*4?", "(12+3)*4"),
    ("compute 3.5 + 2.5.", "3.5 + 2.5"),
    ("no numbers here", None),
    ("a 1 b 22 + 3 c", "22 + 3"),
])
def test_find_expression(text, expr):
    assert find_expression(text) == expr


@pytest.mark.parametrize("expr,value", [
    ("1+2*3", "7"), ("(1+2)*3", "9"), ("-3 + 5", "2"), ("7/2", "3.5"), ("6/3", "2"),
    ("2/3", "0.6666666667"), ("1.5*2", "3"), ("--4", "4"),
])
def test_evaluate(expr, value):
    assert format_number(evaluate(expr)[0]) == value


@pytest.mark.parametrize("text", ["What is 1/0?", "just 42", "(1+2", "1 + * 2"])
def test_solve_refuses(text):
    assert solve(text) is None


# -- tool choice and arguments -----------------------------------------------------------------
@pytest.mark.parametrize("text,index", [
    ("What's the weather in Paris?", 0),
    ("What is 17*23?", 1),
    ("search the documentation for install", 2),
    ("tell me a joke", 0),
])
def test_choose_tool(text, index):
    assert choose_tool([WEATHER, CALC, SEARCH], text) == index


def test_arguments_from_schema():
    params = {"type": "object", "properties": {
        "city": {"type": "string"}, "expression": {"type": "string"},
        "count": {"type": "integer"}, "ratio": {"type": "number"}, "flag": {"type": "boolean"},
        "mode": {"enum": ["fast", "slow"]}, "tags": {"type": "array"}, "note": {"type": "string"},
        "opt_num": {"type": "number"}},
        "required": ["city", "count", "ratio", "flag", "mode", "tags", "note"]}
    args = build_arguments(params, "Weather in New York for 3.7 days, 2 + 2")
    assert args == {"city": "New York", "expression": "2 + 2",
                    "count": 3, "ratio": 3.7, "flag": False, "mode": "fast", "tags": [],
                    "note": "Weather in New York for 3.7 days, 2 + 2"}


def test_location_falls_back_to_last_capitalised_word():
    assert build_arguments(WEATHER["function"]["parameters"], "weather for Berlin please") == {
        "city": "Berlin", "unit": "celsius"}


def test_tool_call_text_is_hermes_json():
    text = model.generate(user("What's the weather in Paris?"), [WEATHER, CALC])
    assert text == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
                    "\n</tool_call>")


def test_tool_choice_none_named_and_tool_results():
    assert model.generate(user("What is 2+3?"), [WEATHER, CALC], "none") == "The answer is 5."
    named = {"type": "function", "function": {"name": "calculator"}}
    assert '"name": "calculator"' in model.generate(user("weather in Rome"), [WEATHER, CALC], named)
    convo = user("What is 2+3?") + [{"role": "assistant", "content": None}, {"role": "tool", "content": " 5 "}]
    assert model.generate(convo, [CALC]) == "The answer is 5."
    # a new user turn after a tool result calls a tool again
    assert model.generate(convo + user("and 4*4?"), [CALC]).startswith("<tool_call>")


@pytest.mark.parametrize("text,answer", [
    ("What is 12*(3+4)?", "The answer is 84."),
    ("hello there", "You said: hello there."),
    ("", "Hello! How can I help?"),
])
def test_answers(text, answer):
    assert model.generate(user(text)) == answer


def test_thinking_prefix():
    out = model.generate(user("What is 1+1?"), think=True)
    assert out == "<think>I will compute 1+1.</think>\n\nThe answer is 2."


def test_deterministic():
    msgs = user("weather in Oslo")
    assert model.generate(msgs, [WEATHER], think=True) == model.generate(msgs, [WEATHER], think=True)


# -- parsers and the template round trip ------------------------------------------------------
def test_split_reasoning():
    assert split_reasoning("<think>R</think>\n\nC") == ("R", "C")
    assert split_reasoning("<think>R</think>") == ("R", None)
    assert split_reasoning("<think>cut sho") == ("cut sho", None)
    assert split_reasoning("plain") == (None, "plain")


def test_parse_tool_calls():
    ids = (f"id{i}" for i in itertools.count())
    text = '<tool_call>\n{"name": "f", "arguments": {"a": "é"}}\n</tool_call>'
    content, calls = parse_tool_calls(text, lambda: next(ids))
    assert content is None
    assert calls == [{"id": "id0", "type": "function", "function": {"name": "f", "arguments": '{"a": "é"}'}}]
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": "é"}
    bad = "<tool_call>\n{oops}\n</tool_call>"
    assert parse_tool_calls(bad, lambda: "x") == (bad, [])
    assert parse_tool_calls("no calls", lambda: "x") == ("no calls", [])


@pytest.mark.parametrize("think", [False, True])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("msgs,tools", [
    (user("What's the weather in Paris?"), [WEATHER]),
    (user("What is 6*7?"), None),
    (user("say hi"), None),
])
def test_generation_round_trips_through_parsers_and_template(think, split, msgs, tools):
    text = model.generate(msgs, tools, think=think)
    reasoning, content = split_reasoning(text) if split else (None, text)
    calls = []
    if tools and content:
        content, calls = parse_tool_calls(content, lambda: "id")
    message = {"role": "assistant", "content": content, "reasoning": reasoning}
    if calls:
        message["tool_calls"] = calls
    assert render_assistant_body(message) == text
