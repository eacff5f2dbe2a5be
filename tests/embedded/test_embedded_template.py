"""Unit tests: chat template rendering and its inverse for raw prompts."""

import json

import pytest

from gym_rollouts.embedded.template import (
    DEFAULT_SYSTEM,
    ChatTemplate,
    TemplateError,
    content_text,
    parse_chatml,
    render_assistant_body,
    render_tool_call,
)

CALC_TOOL = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}
ECHO_TOOL = {"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}
TOOLS = [CALC_TOOL, ECHO_TOOL]


@pytest.fixture
def tpl():
    return ChatTemplate()


def test_plain_messages(tpl):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    assert tpl.render(msgs) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tpl.render(msgs, add_generation_prompt=False).endswith("hi<|im_end|>\n")


def test_tools_create_a_system_message(tpl):
    out = tpl.render([{"role": "user", "content": "hi"}], [CALC_TOOL])
    assert out.startswith("<|im_start|>system\n" + DEFAULT_SYSTEM + "\n\n# Tools")
    assert json.dumps(CALC_TOOL) in out
    assert out.count("<|im_start|>system") == 1
    assert out.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_tools_go_into_existing_system_message(tpl):
    out = tpl.render([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "x"}], TOOLS)
    assert out.startswith("<|im_start|>system\nBe terse.\n\n# Tools")
    assert out.count("<|im_start|>system") == 1
    assert all(json.dumps(t) in out for t in TOOLS)


def test_assistant_tool_call_rendering(tpl):
    msg = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "calculator", "arguments": '{"expression":"1+2"}'}}]}
    assert tpl.render_message(msg) == (
        '<|im_start|>assistant\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+2"}}'
        "\n</tool_call><|im_end|>\n"
    )


def test_two_tool_calls_and_unparsable_arguments():
    msg = {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"function": {"name": "a", "arguments": "{not json"}},
        {"function": {"name": "b", "arguments": {"k": 1}}}]}
    assert render_assistant_body(msg) == (
        'Let me check.<tool_call>\n{"name": "a", "arguments": {not json}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {"k": 1}}\n</tool_call>'
    )


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
@pytest.mark.parametrize("content", ["Done.", "\n\nDone."])
def test_reasoning_rendered_back_as_think_block(field, content):
    msg = {"role": "assistant", "content": content, field: "Think."}
    assert render_assistant_body(msg) == "<think>Think.</think>\n\nDone."


def test_inline_think_is_not_doubled():
    msg = {"role": "assistant", "content": "<think>T</think>\n\nA", "reasoning": "T"}
    assert render_assistant_body(msg) == "<think>T</think>\n\nA"


def test_tool_result_renders_qwen_style(tpl):
    assert tpl.render_message({"role": "tool", "tool_call_id": "1", "content": "42"}) == (
        "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n"
    )


def test_content_parts_and_errors():
    assert content_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert content_text(None) == ""
    with pytest.raises(TemplateError):
        content_text(5)
    with pytest.raises(TemplateError):
        ChatTemplate().render([{"content": "no role"}])


def test_render_tool_call_matches_json_dumps_of_the_call():
    args = {"city": "Paris", "n": 2.5, "ok": False}
    assert render_tool_call("f", args) == "<tool_call>\n" + json.dumps({"name": "f", "arguments": args}) + "\n</tool_call>"
    assert render_tool_call("f", json.dumps(args, separators=(",", ":"))) == render_tool_call("f", args)


def test_parse_chatml_inverts_render(tpl):
    msgs = [{"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"function": {"name": "calculator", "arguments": '{"expression": "2+2"}'}}]},
            {"role": "tool", "content": "4"}]
    parsed, tools = parse_chatml(tpl.render(msgs, TOOLS))
    assert tools == TOOLS
    assert [m["role"] for m in parsed] == ["system", "user", "assistant", "tool"]
    assert parsed[1]["content"] == "What is 2+2?"
    assert parsed[3]["content"] == "4"
    assert parse_chatml("plain text") == ([{"role": "user", "content": "plain text"}], [])
