"""Chat / completions replies -> Responses output items; usage; SDK-valid shapes."""

from __future__ import annotations

import dataclasses

import pytest
from openai.types.responses import ResponseOutputItem, ResponseUsage
from pydantic import TypeAdapter

from gym_rollouts.adapter.completions import completion_reply_to_turn
from gym_rollouts.adapter.reply import ModelTurn, chat_reply_to_turn, map_usage
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError

BASE = ModelConfig()
NO_PARSER = dataclasses.replace(BASE, uses_reasoning_parser=False)
ITEM = TypeAdapter(ResponseOutputItem)


def chat(content, *, finish="stop", tool_calls=None, usage=None, **message):
    msg = {"role": "assistant", "content": content, **message}
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    return {"choices": [{"index": 0, "message": msg, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def tc(name, args, cid="call_9"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def shape(turn):
    """(type, text-or-name, ...) per output item: what the table compares."""
    out = []
    for item in turn.output:
        if item["type"] == "reasoning":
            out.append(("reasoning", [s["text"] for s in item["summary"]]))
        elif item["type"] == "message":
            out.append(("message", item["content"][0]["text"]))
        else:
            out.append(("function_call", item["name"], item["arguments"], item["call_id"]))
    return out


CASES = [
    ("plain answer", chat("Hello"), BASE, [("message", "Hello")]),
    ("one <think> block -> reasoning item then message (whitespace exact)",
     chat("<think>plan\n</think>\n\nanswer "), BASE, [("reasoning", ["plan\n"]), ("message", "\n\nanswer ")]),
    ("several <think> blocks -> one summary entry each",
     chat("<think>a</think>x<think>b</think>y"), BASE, [("reasoning", ["a", "b"]), ("message", "xy")]),
    ("unclosed <think> (cut by max_tokens) is reasoning",
     chat("<think>still thinking", finish="length"), BASE, [("reasoning", ["still thinking"]), ("message", "")]),
    ("leading </think> without opener (template pre-filled <think>)",
     chat("plan</think>answer"), BASE, [("reasoning", ["plan"]), ("message", "answer")]),
    ("server-split `reasoning` accepted", chat("\n\nanswer", reasoning="R"), BASE,
     [("reasoning", ["R"]), ("message", "\n\nanswer")]),
    ("server-split `reasoning_content` (vLLM < 0.16) accepted", chat("answer", reasoning_content="R"), BASE,
     [("reasoning", ["R"]), ("message", "answer")]),
    ("server reasoning comes before inline blocks", chat("<think>b</think>x", reasoning="a"), BASE,
     [("reasoning", ["a", "b"]), ("message", "x")]),
    ("uses_reasoning_parser=false: text untouched", chat("<think>a</think>x"), NO_PARSER, [("message", "<think>a</think>x")]),
    ("uses_reasoning_parser=false: server reasoning put back inline", chat("\n\nx", reasoning="R"), NO_PARSER,
     [("message", "<think>R</think>\n\nx")]),
    ("tool call: message left out when there is no text",
     chat(None, finish="tool_calls", tool_calls=[tc("f", '{"a": 1}')]), BASE, [("function_call", "f", '{"a": 1}', "call_9")]),
    ("reasoning, whitespace message, two tool calls, in that order",
     chat("<think>R</think>\n\n", finish="tool_calls", tool_calls=[tc("f", "{}", "c1"), tc("g", "not json", "c2")]), BASE,
     [("reasoning", ["R"]), ("message", "\n\n"), ("function_call", "f", "{}", "c1"), ("function_call", "g", "not json", "c2")]),
    ("null content, no tool calls -> one empty message", chat(None), BASE, [("message", "")]),
]


@pytest.mark.parametrize("reply,cfg,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_chat_reply_items(reply, cfg, expected):
    turn = chat_reply_to_turn(reply, cfg)
    assert shape(turn) == expected
    for item in turn.output:
        ITEM.validate_python(item)  # every item is a valid Responses output item


def test_ids_and_status():
    turn = chat_reply_to_turn(chat("<think>R</think>A", tool_calls=[tc("f", "{}")]), BASE)
    kinds = {i["type"]: i for i in turn.output}
    assert kinds["reasoning"]["id"].startswith("rs_")
    assert kinds["message"]["id"].startswith("msg_")
    assert kinds["function_call"]["id"].startswith("fc_")
    assert {i["status"] for i in turn.output} == {"completed"}
    assert turn.incomplete_reason is None


def test_length_marks_turn_and_items_incomplete():
    turn = chat_reply_to_turn(chat("<think>R</think>partial", finish="length"), BASE)
    assert turn.incomplete_reason == "max_output_tokens"
    assert [i["status"] for i in turn.output] == ["incomplete", "incomplete"]


def test_tool_call_without_id_gets_one():
    turn = chat_reply_to_turn(chat(None, tool_calls=[{"type": "function", "function": {"name": "f", "arguments": "{}"}}]), BASE)
    assert turn.output[0]["call_id"].startswith("call_")


USAGE = [
    ("plain", {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
     (10, 0, 4, 0, 14)),
    ("cached + reasoning details", {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                                    "prompt_tokens_details": {"cached_tokens": 8},
                                    "completion_tokens_details": {"reasoning_tokens": 3}}, (10, 8, 4, 3, 14)),
    ("null details", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                      "prompt_tokens_details": None, "completion_tokens_details": None}, (1, 0, 1, 0, 2)),
    ("missing total", {"prompt_tokens": 2, "completion_tokens": 3}, (2, 0, 3, 0, 5)),
    ("details not objects", {"prompt_tokens": 2, "completion_tokens": 3, "prompt_tokens_details": [1]},
     (2, 0, 3, 0, 5)),
]


@pytest.mark.parametrize("usage,expected", [c[1:] for c in USAGE], ids=[c[0] for c in USAGE])
def test_usage_mapping(usage, expected):
    mapped = map_usage(usage)
    ResponseUsage.model_validate(mapped)
    assert (mapped["input_tokens"], mapped["input_tokens_details"]["cached_tokens"], mapped["output_tokens"],
            mapped["output_tokens_details"]["reasoning_tokens"], mapped["total_tokens"]) == expected


@pytest.mark.parametrize("usage", [None, {}, {"total_tokens": 5}], ids=["absent", "empty", "no counts"])
def test_usage_without_counts_is_unknown_not_zero(usage):
    assert map_usage(usage) is None
    reply = chat("42")
    reply["usage"] = usage
    assert chat_reply_to_turn(reply, BASE).usage is None


@pytest.mark.parametrize("usage", [{"prompt_tokens": "3", "completion_tokens": 2}, {"prompt_tokens": 3},
                                   {"prompt_tokens": 3, "completion_tokens": -1},
                                   {"prompt_tokens": True, "completion_tokens": 2}, [3, 2]],
                         ids=["string count", "one count missing", "negative", "bool", "not an object"])
def test_usage_with_bad_counts_is_a_protocol_error(usage):
    with pytest.raises(ProtocolError, match="usage"):
        map_usage(usage)


BAD = [
    ("no choices", {"choices": []}),
    ("no message", {"choices": [{"index": 0}]}),
    ("content not a string", chat(["x"])),
    ("tool call without a name", chat(None, tool_calls=[{"id": "c", "function": {"arguments": "{}"}}])),
    ("arguments not a string", chat(None, tool_calls=[{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}])),
    ("reasoning not a string", chat("x", reasoning=["r"])),
]


@pytest.mark.parametrize("reply", [c[1] for c in BAD], ids=[c[0] for c in BAD])
def test_unusable_replies_raise_protocol_error(reply):
    with pytest.raises(ProtocolError):
        chat_reply_to_turn(reply, BASE)


def test_completion_reply():
    reply = {"choices": [{"index": 0, "text": "<think>r</think> 42", "finish_reason": "length"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
    turn = completion_reply_to_turn(reply, BASE)
    assert shape(turn) == [("reasoning", ["r"]), ("message", " 42")]
    assert turn.incomplete_reason == "max_output_tokens"
    assert turn.usage["output_tokens"] == 7
    with pytest.raises(ProtocolError):
        completion_reply_to_turn({"choices": [{"text": None}]}, BASE)


def test_captured_ids_are_read_from_the_last_output_item():
    turn = chat_reply_to_turn(chat("42"), BASE)
    assert (turn.prompt_token_ids, turn.generation_token_ids, turn.generation_log_probs) == (None, None, None)
    turn.output[-1].update(prompt_token_ids=[1, 2], generation_token_ids=[3], generation_log_probs=[-0.5])
    assert (turn.prompt_token_ids, turn.generation_token_ids, turn.generation_log_probs) == ([1, 2], [3], [-0.5])
    assert ModelTurn(output=[], usage={}, finish_reason=None).prompt_token_ids is None
