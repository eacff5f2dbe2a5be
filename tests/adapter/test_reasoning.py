"""``<think>`` split/join: whitespace exact, round trip for think-first texts."""

from __future__ import annotations

import pytest

from gym_rollouts.adapter.reasoning import join_reasoning, split_reasoning

SPLIT = [
    ("no think", "hello", [], "hello"),
    ("empty", "", [], ""),
    ("one block", "<think>a</think>b", ["a"], "b"),
    ("newlines kept", "<think>\na\n</think>\n\nb\n", ["\na\n"], "\n\nb\n"),
    ("two blocks", "<think>a</think>x<think>b</think>y", ["a", "b"], "xy"),
    ("empty block", "<think></think>b", [""], "b"),
    ("unclosed block", "x<think>cut", ["cut"], "x"),
    ("stray close = implicit open at start", "plan</think>answer", ["plan"], "answer"),
    ("stray close then a real block", "p</think>a<think>q</think>b", ["p", "q"], "ab"),
    ("only a close tag", "</think>", [""], ""),
]


@pytest.mark.parametrize("text,blocks,rest", [c[1:] for c in SPLIT], ids=[c[0] for c in SPLIT])
def test_split(text, blocks, rest):
    assert split_reasoning(text) == (blocks, rest)


@pytest.mark.parametrize("text", [
    "<think>a</think>b", "<think>\nplan\n</think>\n\n answer  ", "<think>a</think><think>b</think>c", "plain", "",
    "<think></think>", "<think>x</think>\n\n<tool_call>\n{}\n</tool_call>",
])
def test_round_trip_for_think_first_texts(text):
    assert join_reasoning(*split_reasoning(text)) == text
