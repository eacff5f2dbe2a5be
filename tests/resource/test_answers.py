"""Answer extraction rules (resource/answers.py): table-driven, pure."""

from __future__ import annotations

import pytest

from gym_rollouts.errors import ConfigError
from gym_rollouts.resource.answers import AnswerExtractor


@pytest.mark.parametrize(("rule", "text", "expected"), [
    ("answer_tag", "think... <answer>41</answer> then <answer> 42 </answer>", "42"),
    ("answer_tag", "<answer>\nmulti\nline\n</answer>", "multi\nline"),
    ("answer_tag", "no tag here", None),
    ("boxed", r"so \boxed{\frac{1}{2}} and finally \boxed{\frac{3}{4}}.", r"\frac{3}{4}"),
    ("boxed", r"\boxed{ {a}+{b} }", "{a}+{b}"),
    ("boxed", r"\boxed{unclosed", None),
    ("answer_is", "The answer is -4.", "-4"),
    ("answer_is", "Answer: 3.5.\nmore text", "3.5"),
    ("answer_is", "the answer is 1.\nNo wait, the answer is 2.", "2"),
    ("answer_is", "nothing", None),
    ("last_line", "line one\n  line two  \n\n", "line two"),
    ("last_line", "   ", None),
    ("full", "  all of it \n", "all of it"),
    ("auto", "<answer>7</answer> The answer is 8.", "7"),
    ("auto", r"\boxed{9} The answer is 8.", "9"),
    ("auto", "I think the answer is 8.", "8"),
    ("auto", "You said: hello there.", "You said: hello there."),
    ("auto", "", None),
])
def test_rules(rule: str, text: str, expected: str | None) -> None:
    assert AnswerExtractor(rule).extract(text) == expected


def test_pattern_rule_takes_the_first_group_of_the_last_match() -> None:
    rule = AnswerExtractor("pattern", r"FINAL=(\S+)")
    assert rule.extract("FINAL=1 ... FINAL=2") == "2"
    assert rule.extract("none") is None


@pytest.mark.parametrize(("fmt", "pattern", "message"), [
    ("answertag", None, "Did you mean 'answer_tag'?"),
    ("pattern", None, "answer_pattern goes with answer_format=pattern"),
    ("auto", "x(.)", "answer_pattern goes with answer_format=pattern"),
    ("pattern", "(", "is not a valid regex"),
    ("pattern", "no group", "has no group"),
])
def test_bad_rules_say_what_to_do(fmt: str, pattern: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        AnswerExtractor(fmt, pattern)
