"""Responses ``input`` -> chat ``messages``: one table row per conversion rule."""

from __future__ import annotations

import dataclasses

import pytest

from gym_rollouts.adapter.messages import RequestConversionError, input_items, responses_to_chat_messages
from gym_rollouts.config.schema import ModelConfig

BASE = ModelConfig()
NO_INTERLEAVE = dataclasses.replace(BASE, uses_interleaved_reasoning=False)
NO_PARSER = dataclasses.replace(BASE, uses_reasoning_parser=False)
DEV_TO_SYSTEM = dataclasses.replace(BASE, replace_developer_role_with_system=True)


def user(text):
    return {"type": "message", "role": "user", "content": text}


def assistant(text):
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}


def reasoning(*texts):
    return {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": t} for t in texts]}


def call(name, args, call_id="call_1"):
    return {"type": "function_call", "name": name, "arguments": args, "call_id": call_id, "id": "fc_1"}


def output(call_id, text):
    return {"type": "function_call_output", "call_id": call_id, "output": text}


CASES = [
    ("string input is one user message",
     {"input": "hi"}, BASE, [{"role": "user", "content": "hi"}]),
    ("message without type defaults to message",
     {"input": [{"role": "user", "content": "x"}]}, BASE, [{"role": "user", "content": "x"}]),
    ("input_text parts are joined exactly",
     {"input": [{"role": "user", "content": [{"type": "input_text", "text": "a "}, {"type": "input_text", "text": " b"}]}]},
     BASE, [{"role": "user", "content": "a  b"}]),
    ("instructions become the system message",
     {"input": "q", "instructions": "be brief"}, BASE,
     [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]),
    ("instructions + leading system + developer fold into one system message",
     {"input": [{"role": "system", "content": "S"}, {"role": "developer", "content": "D"}, user("q")], "instructions": "I"},
     BASE, [{"role": "system", "content": "I\n\nS\n\nD"}, {"role": "user", "content": "q"}]),
    ("a later system message stays a system message",
     {"input": [user("q"), {"role": "system", "content": "S2"}]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "system", "content": "S2"}]),
    ("a later developer message stays developer by default",
     {"input": [user("q"), {"role": "developer", "content": "D2"}]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "developer", "content": "D2"}]),
    ("replace_developer_role_with_system",
     {"input": [user("q"), {"role": "developer", "content": "D2"}]}, DEV_TO_SYSTEM,
     [{"role": "user", "content": "q"}, {"role": "system", "content": "D2"}]),
    ("assistant message (output_text parts)",
     {"input": [user("q"), assistant("a"), user("q2")]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]),
    ("function_call -> tool_calls, arguments string passed through, output -> tool message",
     {"input": [user("q"), call("calc", '{"x": 1 }'), output("call_1", "2")]}, BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": None,
       "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1 }'}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "2"}]),
    ("reasoning + message + two calls merge into one assistant message (interleaved: reasoning inline)",
     {"input": [user("q"), reasoning("R"), assistant("\n\n"), call("a", "{}", "c1"), call("b", "{}", "c2")]}, BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": "<think>R</think>\n\n",
       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                      {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]}]),
    ("every reasoning block is kept (NeMo Gym keeps only the first)",
     {"input": [user("q"), reasoning("R1", "R2"), reasoning("R3"), assistant("A")]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>R1</think><think>R2</think><think>R3</think>A"}]),
    ("uses_interleaved_reasoning=false drops reasoning from history",
     {"input": [user("q"), reasoning("R"), assistant("A")]}, NO_INTERLEAVE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]),
    ("inline <think> in an assistant message is reasoning too (dropped without interleaving)",
     {"input": [user("q"), assistant("<think>R</think>A")]}, NO_INTERLEAVE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]),
    ("without uses_reasoning_parser assistant text passes through untouched",
     {"input": [user("q"), assistant("<think>R</think>A")]}, dataclasses.replace(NO_PARSER, uses_interleaved_reasoning=False),
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>R</think>A"}]),
    ("reasoning item with reasoning_text content and no summary",
     {"input": [user("q"), {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "C"}]}, assistant("A")]},
     BASE, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>C</think>A"}]),
    ("a tool output between calls splits assistant messages",
     {"input": [user("q"), call("a", "{}", "c1"), output("c1", "1"), call("b", "{}", "c2"), output("c2", "2"), assistant("done")]},
     BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "1"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c2", "content": "2"},
      {"role": "assistant", "content": "done"}]),
    ("function_call_output as text parts / as a JSON value",
     {"input": [user("q"), call("a", "{}", "c1"), {"type": "function_call_output", "call_id": "c1",
                                                    "output": [{"type": "input_text", "text": "p1"}, {"type": "input_text", "text": "p2"}]},
                call("b", "{}", "c2"), {"type": "function_call_output", "call_id": "c2", "output": {"v": 1}}]},
     BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "p1p2"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c2", "content": '{"v":1}'}]),
    ("whitespace is preserved exactly",
     {"input": [user("  q\n"), assistant("\n a \n")]}, BASE,
     [{"role": "user", "content": "  q\n"}, {"role": "assistant", "content": "\n a \n"}]),
]


@pytest.mark.parametrize("params,cfg,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conversion(params, cfg, expected):
    assert responses_to_chat_messages(params, cfg) == expected


ERRORS = [
    ("missing input", {}, "input is missing"),
    ("input of the wrong type", {"input": 3}, "must be a string or a list"),
    ("unsupported item type is named", {"input": [{"type": "web_search_call", "id": "x"}]}, "'web_search_call'"),
    ("unsupported item type lists the supported ones", {"input": [{"type": "item_reference", "id": "x"}]},
     "message, reasoning, function_call, function_call_output"),
    ("image part is refused by name", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "'input_image'"),
    ("unknown role", {"input": [{"role": "critic", "content": "x"}]}, "'critic'"),
    ("function_call_output without call_id", {"input": [{"type": "function_call_output", "output": "x"}]}, "call_id"),
    ("function_call without name", {"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "name"),
    ("item that is not an object", {"input": ["hello"]}, "input[0] must be an object"),
]


@pytest.mark.parametrize("params,fragment", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors_name_the_problem(params, fragment):
    with pytest.raises(RequestConversionError) as info:
        responses_to_chat_messages(params, BASE)
    assert fragment in str(info.value)


def test_input_items_is_the_one_string_normalisation():
    assert input_items("hi") == [user("hi")]
    items = [user("a")]
    assert input_items(items) is items and input_items(None) is None
    assert responses_to_chat_messages({"input": "hi"}, BASE) == responses_to_chat_messages({"input": [user("hi")]}, BASE)
